//! Publishing events: every workflow and task event gets its sequence number in the event
//! log (for catch-up after a reconnect, `events_log.rs`) and goes to the rooms `events` and
//! `workflow:<id>`.

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::events;
use gleitzeit_protocol::{Envelope, Target};
use serde_json::Value;
use tracing::warn;

use crate::events_log::EventLog;

/// Numbers and sends events.
pub(crate) struct Publisher {
    client: HubClient,
    pub(crate) log: EventLog,
}

impl Publisher {
    pub(crate) fn new(client: HubClient) -> Self {
        Publisher {
            client,
            log: EventLog::default(),
        }
    }

    /// Publishes `event` of workflow `wf`.
    pub(crate) fn emit(&mut self, wf: &str, event: &str, mut payload: Value) {
        let target = Target::Room(format!(
            "{},{}",
            events::rooms::EVENTS,
            events::rooms::workflow(wf)
        ));
        let envelope = Envelope::new(target, event, Value::Null);
        self.log.record(wf, event, &mut payload, envelope.ts);
        let envelope = Envelope {
            payload,
            ..envelope
        };
        if let Err(e) = self.client.send(envelope) {
            warn!(error = %e, event, "could not publish an event");
        }
    }
}
