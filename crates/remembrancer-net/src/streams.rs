//! The message streams' writer tasks: one per peer, opening its stream (dialing if need be),
//! retrying with jittered waits, and writing what waits in one frame batch.

use super::*;

/// The writer task of one peer: opens a message stream (dialing the peer if need be) and
/// writes what the queue holds, several messages per write when they wait. It ends, dropping
/// what is queued, when the stream fails; [`Net::send`] then starts another.
pub(crate) fn spawn_writer(
    mut control: libp2p_stream::Control,
    peer: PeerId,
) -> tokio::sync::mpsc::Sender<Bytes> {
    let (sender, mut queue) = tokio::sync::mpsc::channel::<Bytes>(STREAM_QUEUE_MAX);
    tokio::spawn(async move {
        let mut attempt = 0;
        let mut stream = loop {
            match open_stream(&mut control, peer).await {
                Ok(stream) => break stream,
                Err(error) => {
                    attempt += 1;
                    if attempt >= STREAM_OPEN_ATTEMPTS {
                        tracing::debug!(%peer, %error, attempt, "cannot open a message stream");
                        return;
                    }
                    tokio::time::sleep(retry_wait(&peer, attempt)).await;
                }
            }
        };
        let mut buffer = Vec::with_capacity(STREAM_WRITE_BYTES);
        while let Some(first) = queue.recv().await {
            buffer.clear();
            push_frame(&mut buffer, &first);
            while buffer.len() < STREAM_WRITE_BYTES {
                match queue.try_recv() {
                    Ok(next) => push_frame(&mut buffer, &next),
                    Err(_) => break,
                }
            }
            let written = async {
                stream.write_all(&buffer).await?;
                stream.flush().await
            };
            if let Err(error) = written.await {
                tracing::debug!(%peer, %error, "message stream failed");
                return;
            }
        }
        let _ = stream.close().await;
    });
    sender
}

/// Opens a message stream to `peer` and waits until the peer has taken it ([`STREAM_READY`]).
pub(crate) async fn open_stream(
    control: &mut libp2p_stream::Control,
    peer: PeerId,
) -> io::Result<libp2p::Stream> {
    let mut stream = control
        .open_stream(peer, STREAM_PROTOCOL)
        .await
        .map_err(|error| io::Error::new(io::ErrorKind::NotConnected, error.to_string()))?;
    let mut ready = [0u8; 1];
    tokio::time::timeout(STREAM_READY_TIMEOUT, stream.read_exact(&mut ready))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the peer did not take the stream"))??;
    if ready[0] != STREAM_READY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer answered a stream with another byte",
        ));
    }
    Ok(stream)
}

/// The wait before attempt `attempt + 1`: doubling from [`STREAM_RETRY_BASE`], between half
/// and all of it (jitter from the peer and the clock), so that peers refused in one burst do
/// not come back in one burst.
pub(crate) fn retry_wait(peer: &PeerId, attempt: u32) -> Duration {
    let full = STREAM_RETRY_BASE * 2u32.saturating_pow(attempt.saturating_sub(1));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let seed = Sha256::new().chain_update(peer.to_bytes()).chain_update(nanos.to_le_bytes()).finalize();
    let fraction = f64::from(u16::from_le_bytes([seed[0], seed[1]])) / f64::from(u16::MAX);
    full.mul_f64(0.5 + fraction / 2.0)
}
