//! Sends task outcomes to the engines in batches, and held-task reports every couple of
//! seconds.
//!
//! [`OutcomeSender`] is the one outcome batcher of every provider: whatever finished while
//! the previous batch went out travels as one `task_outcomes` envelope per engine. A batch
//! is closed at [`BATCH_COUNT`] outcomes or once its outcomes reach [`BATCH_BYTES`] of JSON:
//! each outcome may be large (capped at `MAX_OUTCOME_BYTES`), and a hub message over the
//! hub's limit would cost the provider its connection and every task it holds.
//!
//! While more tasks are running than the batch holds, it waits up to [`LINGER`] for their
//! outcomes to join it: a provider with two warm Python workers finished tasks one at a
//! time and sent one envelope each (11,000 `task_outcomes` for 10,000 tasks). An outcome
//! with nothing else running (the next step of a chain) goes out at once.
//!
//! Each outcome is written as JSON once, when it joins a batch (which is how the batch counts
//! its bytes), and the batch's payload is those texts side by side: it is never built as a
//! tree of values (which copied every result) nor written a second time.
//!
//! [`spawn_held_reports`] sends `tasks_held` every [`HELD_REPORT_INTERVAL`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{HeldTask, HeldTasks, TaskOutcome};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::{Envelope, Target};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Outcomes of one batch stop being added once they add up to this many bytes of JSON.
pub const BATCH_BYTES: usize = 8 << 20;
/// Most outcomes in one batch.
pub const BATCH_COUNT: usize = 256;
/// Longest an outcome waits for the outcomes of tasks still running to join its batch.
pub const LINGER: Duration = Duration::from_millis(1);
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
    /// Tasks running now (kept by the task runner): the batcher lingers while some are.
    running: Arc<watch::Sender<usize>>,
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
        let running = Arc::new(watch::channel(0usize).0);
        let busy = running.subscribe();
        let task = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let first = match first {
                    Item::Outcome(to, outcome) => (to, outcome),
                    Item::Flush(ack) => {
                        let _ = ack.send(());
                        continue;
                    }
                };
                let (batch, flushed) = next_batch(first, &mut rx, &busy).await;
                for (to, outcomes) in batch {
                    let payload = match JsonText::of(&Written {
                        outcomes: &outcomes,
                    }) {
                        Ok(text) => text,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not write task outcomes");
                            continue;
                        }
                    };
                    let envelope =
                        Envelope::with_text(Target::Component(to), events::TASK_OUTCOMES, payload);
                    if let Err(e) = sink(envelope) {
                        tracing::warn!(error = %e, "could not send task outcomes");
                    }
                }
                if let Some(ack) = flushed {
                    let _ = ack.send(());
                }
            }
        });
        (OutcomeSender { tx, running }, task)
    }

    /// The count of running tasks the batcher watches (the task runner keeps it).
    pub(crate) fn running(&self) -> Arc<watch::Sender<usize>> {
        self.running.clone()
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

/// One batch: outcomes (written as JSON) for an engine each, engines in the order they first
/// appear.
type Batch = Vec<(String, Vec<Box<RawValue>>)>;

/// A `task_outcomes` payload (`TaskOutcomes` without a lease request) of outcomes already
/// written as JSON.
#[derive(Serialize)]
struct Written<'a> {
    outcomes: &'a [Box<RawValue>],
}

/// An outcome as JSON text (`None`, logged, if it cannot be written: a result is a JSON
/// value, so only a failing allocation could).
fn written(outcome: &TaskOutcome) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(outcome)
        .inspect_err(
            |e| tracing::warn!(task = %outcome.task_id, error = %e, "could not write an outcome"),
        )
        .ok()
}

/// Outcomes gathered for a batch, grouped by engine in the order engines first appear.
#[derive(Default)]
struct Gathered {
    order: Vec<String>,
    by_engine: HashMap<String, Vec<Box<RawValue>>>,
    /// Bytes of JSON so far.
    bytes: usize,
}

impl Gathered {
    fn add(&mut self, to: String, outcome: &TaskOutcome) {
        let Some(text) = written(outcome) else {
            return;
        };
        self.bytes += text.get().len();
        if !self.by_engine.contains_key(&to) {
            self.order.push(to.clone());
        }
        self.by_engine.entry(to).or_default().push(text);
    }

    fn into_batch(mut self) -> Batch {
        let by_engine = &mut self.by_engine;
        self.order
            .into_iter()
            .filter_map(|to| by_engine.remove(&to).map(|o| (to, o)))
            .collect()
    }
}

/// `first` plus whatever else is queued already, and what arrives within [`LINGER`] while
/// more tasks run than the batch holds, within the batch bounds, grouped by engine; with the
/// flush request that ended it, if one did.
async fn next_batch(
    first: (String, TaskOutcome),
    rx: &mut mpsc::UnboundedReceiver<Item>,
    busy: &watch::Receiver<usize>,
) -> (Batch, Option<oneshot::Sender<()>>) {
    let mut gathered = Gathered::default();
    gathered.add(first.0, &first.1);
    let mut count = 1;
    let mut flushed = None;
    let until = tokio::time::Instant::now() + LINGER;
    while count < BATCH_COUNT && gathered.bytes < BATCH_BYTES {
        let next = match rx.try_recv() {
            Ok(item) => Some(item),
            // Nothing queued: wait a little only while other tasks are still running (the
            // count may still hold those of this batch, hence "more than").
            Err(_) if *busy.borrow() > count => tokio::time::timeout_at(until, rx.recv())
                .await
                .ok()
                .flatten(),
            Err(_) => None,
        };
        match next {
            Some(Item::Outcome(to, outcome)) => {
                gathered.add(to, &outcome);
                count += 1;
            }
            Some(Item::Flush(ack)) => {
                flushed = Some(ack);
                break;
            }
            None => break,
        }
    }
    (gathered.into_batch(), flushed)
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
    use gleitzeit_protocol::payloads::TaskOutcomes;
    use serde_json::json;

    fn outcome(id: &str, result: Value) -> TaskOutcome {
        TaskOutcome::finished("wf".into(), id.into(), 1, Ok(result), "p".into(), 0)
    }

    fn batches(rx: &mut mpsc::UnboundedReceiver<Envelope>) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        while let Ok(env) = rx.try_recv() {
            let to = match env.target {
                Target::Component(ref c) => c.clone(),
                other => panic!("unexpected target {other:?}"),
            };
            let batch: TaskOutcomes = env.payload_as().expect("outcomes");
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

    /// Sends `id` through `sender` once the tasks woken before it have run (well within
    /// [`LINGER`]: no time passes; tokio's timers have millisecond steps).
    fn soon(sender: &OutcomeSender, id: &'static str) {
        let sender = sender.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
            sender.send("ee".into(), outcome(id, json!(1)));
        });
    }

    #[tokio::test(start_paused = true)]
    async fn an_outcome_waits_briefly_for_tasks_still_running_and_never_alone() {
        let (sender, task, mut rx) = collector();
        let running = sender.running();
        let started = tokio::time::Instant::now();

        // Nothing else runs (a chain's next step): it goes out at once, alone.
        sender.send("ee".into(), outcome("alone", json!(1)));
        soon(&sender, "next");
        tokio::time::sleep(LINGER).await;
        assert_eq!(
            batches(&mut rx),
            [
                ("ee".to_string(), vec!["alone".to_string()]),
                ("ee".to_string(), vec!["next".to_string()])
            ]
        );
        assert_eq!(tokio::time::Instant::now(), started + LINGER);

        // Two more tasks run: the first outcome waits for the one that ends within LINGER.
        running.send_replace(2);
        sender.send("ee".into(), outcome("first", json!(1)));
        soon(&sender, "second");
        tokio::time::sleep(LINGER * 2).await;
        assert_eq!(
            batches(&mut rx),
            [(
                "ee".to_string(),
                vec!["first".to_string(), "second".to_string()]
            )]
        );

        // One that does not end within LINGER does not hold the batch any longer.
        running.send_replace(5);
        sender.send("ee".into(), outcome("waits", json!(1)));
        tokio::time::sleep(LINGER * 3).await;
        assert_eq!(
            batches(&mut rx),
            [("ee".to_string(), vec!["waits".to_string()])]
        );
        drop((sender, running));
        task.abort();
    }
}
