//! The loop: network events, due engine timers, the embedder's calls, the bookkeeping that
//! waited and discovery's turns; after each, the group's write and what it released.

use std::time::Duration;

use futures::FutureExt as _;
use remembrancer_core::engine::Input;
use remembrancer_core::merkle::NodeStore;
use remembrancer_net::NetEvent;

use crate::{now_ms, Control, Embedder, Host, GROUP_INPUTS_MAX};

impl<S: NodeStore> Host<S> {
    /// Feeds the engine every timer that is due.
    pub fn fire_timers<A: Embedder<S>>(&mut self, app: &mut A) -> anyhow::Result<()> {
        let now = now_ms();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            self.input(app, Input::Timer(timer))?;
        }
        Ok(())
    }

    /// Runs the loop until the embedder's calls end or one of them says stop: then the
    /// bookkeeping that waited is handled, the embedder's [`Embedder::on_stop`] runs, and the
    /// last write goes out. The engine must have had [`Input::Start`] (through
    /// [`Host::input`]) before.
    pub async fn run<A: Embedder<S>>(&mut self, app: &mut A) -> anyhow::Result<()> {
        let mut discovery = tokio::time::interval(self.config.discovery_tick);
        let mut carried: Vec<NetEvent> = Vec::new();
        loop {
            let next_timer = self.timers.keys().next().map(|(at, _)| *at);
            let timer_due = async {
                match next_timer {
                    Some(at) => tokio::time::sleep(Duration::from_millis(at.saturating_sub(now_ms()))).await,
                    None => std::future::pending().await,
                }
            };
            let deferred_at = self.deferred_due();
            let deferred_due = async {
                match deferred_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let mut group = std::mem::take(&mut carried);
            let waiting = !group.is_empty();
            let mut stop = false;
            tokio::select! {
                () = std::future::ready(()), if waiting => {}
                () = deferred_due => self.handle_deferred(app)?,
                event = self.net.next() => group.push(event),
                call = app.next_call() => {
                    stop = match call {
                        Some(call) => app.on_call(self, call)? == Control::Stop,
                        None => true,
                    };
                }
                () = timer_due => self.fire_timers(app)?,
                _ = discovery.tick() => self.net.discover(),
            }
            if stop {
                break;
            }
            // Group commit: network events already waiting join this group (at most
            // `GROUP_INPUTS_MAX`), then one write, then what waited for it goes out.
            while group.len() < GROUP_INPUTS_MAX {
                match self.net.next().now_or_never() {
                    Some(event) => group.push(event),
                    None => break,
                }
            }
            if !group.is_empty() {
                self.last_busy = tokio::time::Instant::now();
            }
            self.on_net_group(app, group)?;
            app.before_write(self)?;
            self.flush(app)?;
            // Gossipsub forwards a message once it has our verdict. Before giving the verdicts,
            // it reads what arrived during the group and its write (the events it yields wait
            // for the next group), peers' IDONTWANTs among it: it then does not forward a
            // message to the members that said they have it already.
            while carried.len() < GROUP_INPUTS_MAX {
                match self.net.next().now_or_never() {
                    Some(event) => carried.push(event),
                    None => break,
                }
            }
            self.give_verdicts();
        }
        // What waited is handled before the host stops: no receipt it holds is left unjudged.
        self.handle_deferred(app)?;
        app.on_stop(self)?;
        self.flush(app)?;
        self.give_verdicts();
        Ok(())
    }
}
