//! The request-response codec of catch-up requests and the length-prefixed frames of the
//! message streams, bounded by `MESSAGE_BYTES_MAX`.

use super::*;

/// Length-prefixed (u32, big-endian) opaque bytes, bounded by [`MESSAGE_BYTES_MAX`]; the
/// response is an empty acknowledgement.
#[derive(Debug, Clone, Default)]
pub struct BytesCodec;

pub(crate) async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut length = [0u8; 4];
    io.read_exact(&mut length).await?;
    let length = u32::from_be_bytes(length) as usize;
    if length > MESSAGE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {length} bytes is over the cap"),
        ));
    }
    let mut data = vec![0u8; length];
    io.read_exact(&mut data).await?;
    Ok(data)
}

/// Appends one frame (length prefix and bytes) to `buffer`.
pub(crate) fn push_frame(buffer: &mut Vec<u8>, data: &[u8]) {
    buffer.extend_from_slice(&(data.len() as u32).to_be_bytes());
    buffer.extend_from_slice(data);
}

pub(crate) async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, data: &[u8]) -> io::Result<()> {
    if data.len() > MESSAGE_BYTES_MAX {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "frame over the cap"));
    }
    let mut frame = Vec::with_capacity(4 + data.len());
    push_frame(&mut frame, data);
    io.write_all(&frame).await?;
    io.close().await
}

impl request_response::Codec for BytesCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        read_frame(io).await
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<()> {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: Vec<u8>,
    ) -> io::Result<()> {
        write_frame(io, &request).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        (): (),
    ) -> io::Result<()> {
        io.write_all(&[1]).await?;
        io.close().await
    }
}
