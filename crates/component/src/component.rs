//! The component loop of services that are not providers (engine, resolver,
//! queue-manager): one task that owns the service's state and reacts to three sources —
//! envelopes from the hub, messages from the service's own spawned work (an internal
//! channel), and a periodic tick — until shutdown.
//!
//! ```ignore
//! let (tx, rx) = mpsc::unbounded_channel();
//! let mut engine = Engine::new(client.clone(), tx);
//! let events = Events::new(client.clone(), incoming).internal(rx).tick(Duration::from_millis(100));
//! run_component(&mut engine, events, &shutdown).await;
//! client.close().await;
//! ```
//!
//! Handlers are async (the queue-manager awaits its store) and run one at a time, so the
//! state needs no locks. Work slower than a moment is spawned and reports back through the
//! internal channel. Things due less often than the tick (a metadata refresh every 5 s, held
//! reports every 2 s) are checked in [`Component::on_tick`] with [`Every`]. When the loop has
//! handled everything that was waiting, [`Component::on_idle`] runs once before it waits;
//! when it keeps something back for a moment, [`Component::idle_deadline`] brings the loop
//! round to it again in time.

use std::convert::Infallible;
use std::future::Future;
use std::time::{Duration, Instant};

use gleitzeit_hub_client::{next_envelope, HubClient, Incoming};
use gleitzeit_protocol::events;
use gleitzeit_protocol::metrics::MetricFamily;
use gleitzeit_protocol::Envelope;
use gleitzeit_runtime::Shutdown;
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

/// A service driven by [`run_component`].
///
/// The handlers' futures need not be `Send`: [`run_component`] runs them in place, and its
/// own future is `Send` exactly when theirs are (checked for a sample in the tests).
pub trait Component {
    /// Messages from the service's own spawned work ([`NoInternal`] if it has none).
    type Internal;

    /// An envelope from the hub (`ping`, `shutdown` and `metrics` are handled before).
    fn on_envelope(&mut self, env: Envelope) -> impl Future<Output = ()>;

    /// A message from the internal channel.
    fn on_internal(&mut self, msg: Self::Internal) -> impl Future<Output = ()> {
        let _ = msg;
        async {}
    }

    /// The periodic tick.
    fn on_tick(&mut self) -> impl Future<Output = ()> {
        async {}
    }

    /// The loop handled what was waiting and nothing else is ready (no envelope, no
    /// internal message): the place to send what handlers collected to send together (the
    /// queue-manager's coalesced events). Not called between messages of a backlog.
    fn on_idle(&mut self) -> impl Future<Output = ()> {
        async {}
    }

    /// When [`Component::on_idle`] should run again even if nothing arrives: for what it
    /// chose to keep a little longer (the queue-manager's events of a running workflow).
    /// Asked before every wait; `None` (the default) waits for the next message or tick.
    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// The service's metrics, for the hub's `metrics` request (answered by the loop; see
    /// [`crate::metrics`]). None by default.
    fn metrics(&self) -> Vec<MetricFamily> {
        Vec::new()
    }
}

/// Where a component's events come from.
pub struct Events<I> {
    client: HubClient,
    incoming: Incoming,
    internal: Option<mpsc::UnboundedReceiver<I>>,
    tick: Option<Interval>,
}

impl<I> Events<I> {
    /// Envelopes only.
    pub fn new(client: HubClient, incoming: Incoming) -> Self {
        Events {
            client,
            incoming,
            internal: None,
            tick: None,
        }
    }

    /// Plus messages from the internal channel.
    pub fn internal(mut self, rx: mpsc::UnboundedReceiver<I>) -> Self {
        self.internal = Some(rx);
        self
    }

    /// Plus a tick every `every` (the first at once; a late tick is delayed, not bunched).
    pub fn tick(mut self, every: Duration) -> Self {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        self.tick = Some(tick);
        self
    }
}

impl<I> Events<I> {
    /// True when no envelope and no internal message is queued.
    fn nothing_waiting(&self) -> bool {
        self.incoming.is_empty() && self.internal.as_ref().is_none_or(|rx| rx.is_empty())
    }
}

/// What woke the loop (a local, moved once: its size does not matter).
#[allow(clippy::large_enum_variant)]
enum Event<I> {
    Envelope(Envelope),
    Internal(I),
    Tick,
    /// The idle deadline passed: the loop goes round to `on_idle`.
    Wake,
    InternalClosed,
    Stop,
}

/// Runs `component` until `shutdown` fires, the hub sends `shutdown`, or the client closes.
/// The caller closes the client afterwards (after any cleanup of its own).
pub async fn run_component<C: Component>(
    component: &mut C,
    mut events: Events<C::Internal>,
    shutdown: &Shutdown,
) {
    // Set once something was handled: an idle loop before the first event has nothing to send.
    let mut handled = false;
    loop {
        if handled && events.nothing_waiting() {
            component.on_idle().await;
        }
        let wake = component.idle_deadline();
        let event = {
            let Events {
                client,
                incoming,
                internal,
                tick,
            } = &mut events;
            tokio::select! {
                env = next_envelope(client, incoming, shutdown) => match env {
                    Some(env) => Event::Envelope(env),
                    None => Event::Stop,
                },
                msg = recv(internal) => match msg {
                    Some(msg) => Event::Internal(msg),
                    None => Event::InternalClosed,
                },
                () = ticked(tick) => Event::Tick,
                () = deadline(wake) => Event::Wake,
            }
        };
        handled = true;
        let started = Instant::now();
        let what = match &event {
            Event::Envelope(env) => Some(env.event.clone()),
            Event::Internal(_) => Some("internal message".to_string()),
            Event::Tick => Some("tick".to_string()),
            Event::Wake | Event::InternalClosed | Event::Stop => None,
        };
        match event {
            Event::Envelope(env) if env.event == events::METRICS => {
                crate::metrics::answer(&events.client, &env, || component.metrics());
            }
            Event::Envelope(env) => {
                // Logs while handling it carry the event and the id of the request (or
                // workflow) that caused it, as the hub's do, so one request is followed
                // across services by its correlation id.
                let span = tracing::info_span!(
                    "envelope",
                    event = %env.event,
                    correlation_id = %env.correlation_id.as_deref().unwrap_or(&env.id),
                    source = %env.source,
                );
                tracing::Instrument::instrument(component.on_envelope(env), span).await
            }
            Event::Internal(msg) => component.on_internal(msg).await,
            Event::Tick => component.on_tick().await,
            Event::Wake => {}
            // Every sender is gone: nothing more will come (and recv would return at once).
            Event::InternalClosed => events.internal = None,
            Event::Stop => break,
        }
        let took = started.elapsed();
        if took >= SLOW_HANDLER {
            // Nothing else is handled meanwhile: worth knowing when it happens.
            tracing::warn!(
                handling = what.as_deref().unwrap_or(""),
                took_ms = took.as_millis() as u64,
                "a handler held the component loop"
            );
        }
    }
}

/// A handler that takes this long is logged (the loop handles nothing else meanwhile).
const SLOW_HANDLER: Duration = Duration::from_secs(1);

async fn recv<I>(rx: &mut Option<mpsc::UnboundedReceiver<I>>) -> Option<I> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn ticked(tick: &mut Option<Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn deadline(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// For components without internal messages.
pub type NoInternal = Infallible;

/// Something due every so often, checked from a faster tick.
#[derive(Debug, Clone, Copy)]
pub struct Every {
    period: Duration,
    last: Instant,
}

impl Every {
    /// Due `period` from now, then every `period`.
    pub fn new(period: Duration) -> Self {
        Every {
            period,
            last: Instant::now(),
        }
    }

    /// True (and restarts the period) once `period` passed since the last time.
    pub fn due(&mut self) -> bool {
        if self.last.elapsed() >= self.period {
            self.last = Instant::now();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u32);

    impl Component for Counter {
        type Internal = u32;

        async fn on_envelope(&mut self, _env: Envelope) {
            tokio::task::yield_now().await;
            self.0 += 1;
        }

        async fn on_internal(&mut self, msg: u32) {
            self.0 += msg;
        }
    }

    /// Compiles only if the loop of a component with `Send` handlers can be spawned.
    #[allow(dead_code)]
    fn the_loop_is_send_when_the_handlers_are(
        c: &'static mut Counter,
        events: Events<u32>,
        shutdown: &'static Shutdown,
    ) {
        fn spawnable<T: Send>(_: &T) {}
        spawnable(&run_component(c, events, shutdown));
    }

    #[test]
    fn every_is_due_once_per_period() {
        let mut e = Every::new(Duration::from_millis(30));
        assert!(!e.due());
        std::thread::sleep(Duration::from_millis(40));
        assert!(e.due());
        assert!(!e.due());
    }
}
