//! Sends task outcomes to the engines in batches, and held-task reports every couple of
//! seconds.
//!
//! [`OutcomeSender`] is the one outcome batcher of every provider: whatever finished while
//! the previous batch went out travels as one `task_outcomes` envelope per engine. A batch
//! is closed at [`BATCH_COUNT`] outcomes or once its outcomes reach [`BATCH_BYTES`] of JSON:
//! each outcome may be large (capped at `MAX_OUTCOME_BYTES`), and a hub message over the
//! hub's limit would cost the provider its connection and every task it holds.
//!
//! [`spawn_held_reports`] sends `tasks_held` every [`HELD_REPORT_INTERVAL`].

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{HeldTask, HeldTasks, TaskOutcome, TaskOutcomes};
use gleitzeit_protocol::{Envelope, Target};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Outcomes of one batch stop being added once they add up to this many bytes of JSON.
pub const BATCH_BYTES: usize = 8 << 20;
/// Most outcomes in one batch.
pub const BATCH_COUNT: usize = 256;
/// How often holders report the task attempts they hold (`tasks_held`).
pub const HELD_REPORT_INTERVAL: Duration = Duration::from_secs(2);

/// What the batcher is handed (almost always an outcome: boxing it would only add an
/// allocation per outcome).
#[allow(clippy::large_enum_variant)]
enum Item {
    /// An outcome for an engine.
    Outcome(String, TaskOutcome),
    /// Acknowledge once everything queued before went out.
    Flush(oneshot::Sender<()>),
}

/// Where outcomes go: `(engine id, outcome)` pairs, batched by a background task.
#[derive(Clone)]
pub struct OutcomeSender {
    tx: mpsc::UnboundedSender<Item>,
}

impl OutcomeSender {
    /// Starts a batcher that sends through `client`.
    pub fn start(client: &HubClient) -> (OutcomeSender, JoinHandle<()>) {
        let client = client.clone();
        OutcomeSender::with_sink(move |envelope| client.send(envelope))
    }

    /// Starts a batcher that hands each `task_outcomes` envelope to `sink` (tests collect
    /// them). The returned task ends once every [`OutcomeSender`] clone is dropped and what
    /// was queued went out.
    pub fn with_sink<F>(sink: F) -> (OutcomeSender, JoinHandle<()>)
    where
        F: Fn(Envelope) -> Result<(), GzError> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let first = match first {
                    Item::Outcome(to, outcome) => (to, outcome),
                    Item::Flush(ack) => {
                        let _ = ack.send(());
                        continue;
                    }
                };
                let (batch, flushed) = next_batch(first, &mut rx);
                for (to, outcomes) in batch {
                    let payload =
                        serde_json::to_value(TaskOutcomes { outcomes }).unwrap_or(Value::Null);
                    let envelope =
                        Envelope::new(Target::Component(to), events::TASK_OUTCOMES, payload);
                    if let Err(e) = sink(envelope) {
                        tracing::warn!(error = %e, "could not send task outcomes");
                    }
                }
                if let Some(ack) = flushed {
                    let _ = ack.send(());
                }
            }
        });
        (OutcomeSender { tx }, task)
    }

    /// Queues the outcome of a task that `engine` sent.
    pub fn send(&self, engine: String, outcome: TaskOutcome) {
        if self.tx.send(Item::Outcome(engine, outcome)).is_err() {
            tracing::warn!("outcome dropped: the outcome sender is gone");
        }
    }

    /// Waits until every outcome queued so far was handed to the sink.
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Item::Flush(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

/// One batch: outcomes for an engine each, engines in the order they first appear.
type Batch = Vec<(String, Vec<TaskOutcome>)>;

/// `first` plus whatever else is queued already, within the batch bounds, grouped by engine;
/// with the flush request that ended it, if one did.
fn next_batch(
    first: (String, TaskOutcome),
    rx: &mut mpsc::UnboundedReceiver<Item>,
) -> (Batch, Option<oneshot::Sender<()>>) {
    let mut order: Vec<String> = Vec::new();
    let mut by_engine: HashMap<String, Vec<TaskOutcome>> = HashMap::new();
    let mut add = |(to, outcome): (String, TaskOutcome)| {
        if !by_engine.contains_key(&to) {
            order.push(to.clone());
        }
        by_engine.entry(to).or_default().push(outcome);
    };
    let mut bytes = json_len(&first.1);
    add(first);
    let mut count = 1;
    let mut flushed = None;
    while count < BATCH_COUNT && bytes < BATCH_BYTES {
        match rx.try_recv() {
            Ok(Item::Outcome(to, outcome)) => {
                bytes += json_len(&outcome);
                add((to, outcome));
                count += 1;
            }
            Ok(Item::Flush(ack)) => {
                flushed = Some(ack);
                break;
            }
            Err(_) => break,
        }
    }
    let batch = order
        .into_iter()
        .filter_map(|to| by_engine.remove(&to).map(|o| (to, o)))
        .collect();
    (batch, flushed)
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

/// Sends `tasks_held` reports every [`HELD_REPORT_INTERVAL`] while connected: `snapshot`
/// returns, per receiver (component id), the attempts held for it, an empty list included.
pub fn spawn_held_reports<F>(client: &HubClient, snapshot: F) -> JoinHandle<()>
where
    F: Fn() -> Vec<(String, Vec<HeldTask>)> + Send + 'static,
{
    let client = client.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HELD_REPORT_INTERVAL);
        loop {
            tick.tick().await;
            if !client.is_connected() {
                continue;
            }
            for (to, tasks) in snapshot() {
                let payload = serde_json::to_value(HeldTasks { tasks }).unwrap_or(Value::Null);
                let _ = client.emit(Target::Component(to), events::TASKS_HELD, payload);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn outcome(id: &str, result: Value) -> TaskOutcome {
        TaskOutcome::finished("wf".into(), id.into(), 1, Ok(result), "p".into(), 0)
    }

    fn batches(rx: &mut mpsc::UnboundedReceiver<Envelope>) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        while let Ok(env) = rx.try_recv() {
            let to = match env.target {
                Target::Component(c) => c,
                other => panic!("unexpected target {other:?}"),
            };
            let batch: TaskOutcomes = serde_json::from_value(env.payload).expect("outcomes");
            out.push((to, batch.outcomes.into_iter().map(|o| o.task_id).collect()));
        }
        out
    }

    fn collector() -> (
        OutcomeSender,
        JoinHandle<()>,
        mpsc::UnboundedReceiver<Envelope>,
    ) {
        let (env_tx, env_rx) = mpsc::unbounded_channel();
        let (sender, task) = OutcomeSender::with_sink(move |e| {
            let _ = env_tx.send(e);
            Ok(())
        });
        (sender, task, env_rx)
    }

    #[tokio::test]
    async fn queued_outcomes_travel_as_one_envelope_per_engine() {
        let (sender, task, mut rx) = collector();
        // Queued before the batcher runs (current-thread runtime): one batch.
        for (engine, id) in [("ee-1", "a"), ("ee-2", "b"), ("ee-1", "c")] {
            sender.send(engine.into(), outcome(id, json!(1)));
        }
        drop(sender);
        task.await.expect("batcher");
        assert_eq!(
            batches(&mut rx),
            vec![
                ("ee-1".to_string(), vec!["a".to_string(), "c".to_string()]),
                ("ee-2".to_string(), vec!["b".to_string()]),
            ]
        );
    }

    #[tokio::test]
    async fn batches_are_bounded_by_count_and_size() {
        let (sender, task, mut rx) = collector();
        for i in 0..(BATCH_COUNT + 10) {
            sender.send("ee".into(), outcome(&format!("t{i}"), json!(i)));
        }
        let big = "x".repeat(BATCH_BYTES / 2 + 1);
        for i in 0..3 {
            sender.send("ee".into(), outcome(&format!("big{i}"), json!(big)));
        }
        drop(sender);
        task.await.expect("batcher");
        let sizes: Vec<usize> = batches(&mut rx).iter().map(|(_, ids)| ids.len()).collect();
        assert_eq!(sizes[0], BATCH_COUNT);
        // The rest of the small ones plus two halves fill the next batch past the byte bound.
        assert_eq!(sizes[1..], [12, 1]);
    }
}
