//! `system_alert` `queue_backlog`: tasks of a method (or named function) that have waited
//! half the provider grace with no engine serving it are about to fail with GZ2015; the
//! room `components` hears of it (monitors, dashboards, `gz events --follow`), at most once
//! per method every [`REPEAT`].

use std::time::Duration;

use tokio::time::Instant;

use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::payloads::SystemAlert;
use gleitzeit_protocol::{routing, to_payload, Envelope, Target};
use serde_json::json;
use tracing::warn;

use super::Manager;
use crate::machine::Now;

/// The same method is alerted on again after this long at the earliest.
const REPEAT: Duration = Duration::from_secs(300);

impl Manager {
    /// Sends the backlog alerts that are due.
    pub(super) fn alert_backlogs(&mut self, now: Now) {
        let grace = self.machine.provider_grace();
        let due: Vec<(String, Duration, usize)> = self
            .machine
            .unserved_waiting(now)
            .into_iter()
            .filter(|(_, waited, _)| *waited >= grace / 2)
            .collect();
        self.alerted
            .retain(|_, at| now.at.duration_since(*at) < REPEAT);
        for (route, waited, queued) in due {
            if self.alerted.contains_key(&route) {
                continue;
            }
            self.alerted.insert(route.clone(), now.at);
            let what = routing::describe(&route);
            let alert = SystemAlert {
                kind: "queue_backlog".into(),
                severity: "warning".into(),
                message: format!(
                    "{queued} task(s) of {what} have waited {:.0} s and no engine serves it; they fail with GZ2015 after {:.0} s",
                    waited.as_secs_f64(),
                    grace.as_secs_f64()
                ),
                component_id: Some(self.client.id().to_string()),
                component_type: Some(events::component_types::QUEUE_MANAGER.to_string()),
                details: json!({ "method": route, "queued": queued, "waited_seconds": waited.as_secs_f64() }),
            };
            warn!(method = %route, queued, "tasks back up: no engine serves the method");
            let Ok(payload) = to_payload(&alert) else {
                continue;
            };
            let env = Envelope::new(
                Target::Room(rooms::COMPONENTS.to_string()),
                events::SYSTEM_ALERT,
                payload,
            );
            if let Err(e) = self.client.send(env) {
                warn!(error = %e, "could not send a backlog alert");
            }
        }
    }
}

/// When alerts were last sent, by method.
pub(crate) type Alerted = std::collections::HashMap<String, Instant>;
