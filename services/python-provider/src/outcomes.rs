//! Sends task outcomes to the engines in batches bounded by count *and* size.
//!
//! Whatever finished while the previous batch went out travels as one `task_outcomes`
//! envelope per engine, like `gleitzeit_hub_client::outcome_sender`, except that a batch is
//! closed once its outcomes reach [`BATCH_BYTES`]: each outcome is capped by the worker
//! (`Limits::max_output`, at most 48 MiB), and a hub message may not exceed 64 MiB; a
//! message over it would cost the provider its connection and every task it holds.

use std::collections::HashMap;
use std::io::Write;

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{TaskOutcome, TaskOutcomes};
use gleitzeit_protocol::{Envelope, Target};
use serde_json::Value;
use tokio::sync::mpsc;

/// Outcomes of one batch stop being added once they add up to this many bytes of JSON.
pub const BATCH_BYTES: usize = 8 << 20;
/// Most outcomes in one batch.
const BATCH_COUNT: usize = 256;

/// Starts the batcher: send `(engine id, outcome)` pairs to the returned channel.
pub fn outcome_sender(client: &HubClient) -> mpsc::UnboundedSender<(String, TaskOutcome)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, TaskOutcome)>();
    let client = client.clone();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut by_target: HashMap<String, Vec<TaskOutcome>> = HashMap::new();
            let mut bytes = json_len(&first.1);
            by_target.entry(first.0).or_default().push(first.1);
            let mut count = 1;
            while count < BATCH_COUNT && bytes < BATCH_BYTES {
                let Ok((to, outcome)) = rx.try_recv() else {
                    break;
                };
                bytes += json_len(&outcome);
                by_target.entry(to).or_default().push(outcome);
                count += 1;
            }
            for (to, outcomes) in by_target {
                let payload =
                    serde_json::to_value(TaskOutcomes { outcomes }).unwrap_or(Value::Null);
                let envelope = Envelope::new(Target::Component(to), events::TASK_OUTCOMES, payload);
                if let Err(e) = client.send(envelope) {
                    tracing::warn!(error = %e, "could not send task outcomes");
                }
            }
        }
    });
    tx
}

/// The size of an outcome's JSON, counted without building it.
pub fn json_len(outcome: &TaskOutcome) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, outcome);
    count.0
}
