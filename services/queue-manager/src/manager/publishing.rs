//! Publishing events: every workflow and task event gets its sequence number in the event
//! log (for catch-up after a reconnect, `events_log.rs`) and goes to the rooms `events` and
//! `workflow:<id>`.
//!
//! Events are coalesced: what the queue-manager emits while it works through the messages
//! waiting for it (outcome batches, lease requests, resolver answers, a tick) is collected
//! per workflow and sent as one `event_batch` envelope when its loop has nothing more
//! waiting and the oldest event is [`IDLE_DELAY`] old ([`Publisher::flush_idle`], from the
//! component loop's `on_idle`, which [`Publisher::due`] brings round in time), so twenty
//! watchers of a busy workflow get one frame per batch instead of one per task event, and a
//! chain of quick tasks one frame per ~10 ms instead of one per task (each frame is a relay
//! through the hub and a wake-up of every watcher, on the same cores as the chain). The end
//! of a workflow does not wait: a batch with a workflow's final event goes out when the loop
//! is idle. Under a steady backlog a batch goes out once its oldest event is [`MAX_DELAY`]
//! old ([`Publisher::flush_overdue`], after every message), or when it reaches
//! [`MAX_BATCH_EVENTS`] events or about [`MAX_BATCH_BYTES`] bytes.
//!
//! A batch goes to the rooms `events` and `workflow:<id>` when someone watches either
//! (`watchers.rs`, as the hub reports it), and its workflow events (not task events) to
//! `summary:<id>`, the room of watchers that show a bar or a summary. A workflow nobody
//! watches sends only its workflow events; every event stays in the log for catch-up.
//!
//! `workflow_progress` is sent at most every [`PROGRESS_EVERY`] per workflow: a newer one
//! replaces a held one, which goes out with the first flush after its time, and always
//! before the workflow's final event. A held progress is numbered only when it is sent, so
//! the `seq`s a watcher sees stay contiguous.

use std::collections::HashMap;
use std::time::Duration;

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::events;
use gleitzeit_protocol::metrics::MetricFamily;
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::{Envelope, Target};
use serde::Serialize;

use tokio::time::Instant;
use tracing::warn;

use super::watchers::Watchers;
use crate::events_log::{EventLog, Kept};
use crate::machine::EventPayload;

/// Most events in one `event_batch`.
pub(crate) const MAX_BATCH_EVENTS: usize = 1_000;
/// A batch whose payloads come to about this many bytes goes out at once (measured as
/// unescaped text; one event's result may be up to 16 MiB, the hub takes 64 MiB).
pub(crate) const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Events wait at most about this long for the loop to become idle.
pub(crate) const MAX_DELAY: Duration = Duration::from_millis(20);
/// Events of running workflows wait this long in an idle loop for more to join them.
pub(crate) const IDLE_DELAY: Duration = Duration::from_millis(10);
/// `workflow_progress` at most this often per workflow.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// When more workflows than this have a progress time kept, the old ones are forgotten.
const FORGET_PROGRESS_ABOVE: usize = 1_024;

/// Where envelopes go (the hub client; a list in tests).
type Sink = Box<dyn Fn(Envelope) + Send + Sync>;

/// One workflow's events waiting for the end of the handler.
struct Pending {
    workflow: String,
    events: Vec<Kept>,
    bytes: usize,
}

/// Numbers, coalesces and sends events.
pub(crate) struct Publisher {
    sink: Sink,
    pub(crate) log: EventLog,
    /// Who watches which workflow's task events.
    pub(crate) watchers: Watchers,
    /// Task events not sent because no one watched them (they stay in the log).
    unwatched: u64,
    /// Batches in the order their workflows first had an event.
    pending: Vec<Pending>,
    /// When the oldest pending event was made.
    oldest: Option<Instant>,
    /// A pending batch holds a workflow's final event (it goes out when the loop is idle).
    finishing: bool,
    /// When each workflow's progress was last sent (recently progressing ones only).
    progress_sent: HashMap<String, Instant>,
    /// The newest progress held back, per workflow.
    progress_held: HashMap<String, EventPayload>,
}

impl Publisher {
    pub(crate) fn new(client: HubClient) -> Self {
        Publisher::with_sink(Box::new(move |envelope: Envelope| {
            if let Err(e) = client.send(envelope) {
                warn!(error = %e, "could not publish events");
            }
        }))
    }

    fn with_sink(sink: Sink) -> Self {
        Publisher {
            sink,
            log: EventLog::default(),
            watchers: Watchers::default(),
            unwatched: 0,
            pending: Vec::new(),
            oldest: None,
            finishing: false,
            progress_sent: HashMap::new(),
            progress_held: HashMap::new(),
        }
    }

    /// Publishes `event` of workflow `wf` (with the next flush).
    pub(crate) fn emit(&mut self, wf: &str, event: &str, payload: impl Into<EventPayload>) {
        let payload = payload.into();
        if event == events::WORKFLOW_PROGRESS {
            return self.progress(wf, payload);
        }
        let finished = matches!(
            event,
            events::WORKFLOW_COMPLETED | events::WORKFLOW_FAILED | events::WORKFLOW_CANCELLED
        );
        if finished {
            self.finishing = true;
            self.progress_sent.remove(wf);
            if let Some(held) = self.progress_held.remove(wf) {
                self.push(wf, events::WORKFLOW_PROGRESS, held);
            }
        }
        self.push(wf, event, payload);
    }

    /// A progress event: sent now when the last one is old enough, else held.
    fn progress(&mut self, wf: &str, payload: EventPayload) {
        let now = Instant::now();
        let recent = self
            .progress_sent
            .get(wf)
            .is_some_and(|t| now.duration_since(*t) < PROGRESS_EVERY);
        if recent {
            self.progress_held.insert(wf.to_string(), payload);
        } else {
            self.progress_sent.insert(wf.to_string(), now);
            self.progress_held.remove(wf);
            self.push(wf, events::WORKFLOW_PROGRESS, payload);
        }
    }

    /// Numbers an event, keeps it in the log and adds it to its workflow's batch.
    fn push(&mut self, wf: &str, event: &str, payload: EventPayload) {
        let logged = self.log.record(wf, event, payload, now_millis());
        let bytes = logged.len();
        self.oldest.get_or_insert_with(Instant::now);
        let i = match self.pending.iter().position(|p| p.workflow == wf) {
            Some(i) => i,
            None => {
                self.pending.push(Pending {
                    workflow: wf.to_string(),
                    events: Vec::new(),
                    bytes: 0,
                });
                self.pending.len() - 1
            }
        };
        let batch = &mut self.pending[i];
        batch.events.push(logged);
        batch.bytes += bytes;
        if batch.events.len() >= MAX_BATCH_EVENTS || batch.bytes >= MAX_BATCH_BYTES {
            let full = self.pending.remove(i);
            self.send(full);
            if self.pending.is_empty() {
                // Nothing left to wait for: no wake-up for it.
                self.oldest = None;
            }
        }
    }

    /// Sends the batches collected when the oldest event in them waited [`MAX_DELAY`]
    /// (called after every message, for a loop that never becomes idle).
    pub(crate) fn flush_overdue(&mut self) {
        if self.oldest.is_some_and(|t| t.elapsed() >= MAX_DELAY) {
            self.flush();
        }
    }

    /// Sends the batches collected when a workflow finished among them or the oldest event
    /// in them waited [`IDLE_DELAY`] (called when the loop has nothing more waiting).
    pub(crate) fn flush_idle(&mut self) {
        if self.finishing || self.oldest.is_some_and(|t| t.elapsed() >= IDLE_DELAY) {
            self.flush();
        }
    }

    /// When [`Publisher::flush_idle`] will send what is pending (`None`: nothing pending).
    pub(crate) fn due(&self) -> Option<Instant> {
        self.oldest.map(|t| t + IDLE_DELAY)
    }

    /// Sends every batch collected, after adding the held progress events that are due.
    /// Called when the queue-manager's loop has nothing more waiting (and on every tick).
    pub(crate) fn flush(&mut self) {
        if !self.progress_held.is_empty() {
            self.release_due_progress();
        }
        if self.progress_sent.len() > FORGET_PROGRESS_ABOVE {
            self.forget_old_progress();
        }
        self.oldest = None;
        self.finishing = false;
        for batch in std::mem::take(&mut self.pending) {
            self.send(batch);
        }
    }

    /// Sends the held progress events whose time has come.
    fn release_due_progress(&mut self) {
        let now = Instant::now();
        let sent = &self.progress_sent;
        let due: Vec<String> = self
            .progress_held
            .keys()
            .filter(|wf| {
                sent.get(*wf)
                    .is_none_or(|t| now.duration_since(*t) >= PROGRESS_EVERY)
            })
            .cloned()
            .collect();
        for wf in due {
            if let Some(held) = self.progress_held.remove(&wf) {
                self.progress_sent.insert(wf.clone(), now);
                self.push(&wf, events::WORKFLOW_PROGRESS, held);
            }
        }
    }

    /// Forgets when workflows that stopped progressing (or moved to another queue-manager)
    /// last sent their progress, once many are kept.
    fn forget_old_progress(&mut self) {
        let now = Instant::now();
        let held = &self.progress_held;
        self.progress_sent
            .retain(|wf, t| held.contains_key(wf) || now.duration_since(*t) < PROGRESS_EVERY);
    }

    /// Sends a workflow's batch: all of it to `events` and `workflow:<id>` when someone
    /// watches its task events, and its workflow events to `summary:<id>` (to all three
    /// rooms when they are all it has, or no one wants its task events); one envelope when
    /// one will do.
    fn send(&mut self, batch: Pending) {
        let wf = batch.workflow.as_str();
        let (all, summary) = (
            format!("{},{}", events::rooms::EVENTS, events::rooms::workflow(wf)),
            events::rooms::summary(wf),
        );
        let tasks = batch
            .events
            .iter()
            .filter(|k| events::is_task_event(&k.event))
            .count();
        if tasks == 0 {
            return self.send_events(wf, format!("{all},{summary}"), &batch.events);
        }
        let everything = self.watchers.want_task_events(wf);
        if everything {
            self.send_events(wf, all.clone(), &batch.events);
        } else {
            self.unwatched += tasks as u64;
        }
        if tasks < batch.events.len() {
            let own: Vec<Kept> = batch
                .events
                .iter()
                .filter(|k| !events::is_task_event(&k.event))
                .cloned()
                .collect();
            let rooms = if everything {
                summary
            } else {
                format!("{all},{summary}")
            };
            self.send_events(wf, rooms, &own);
        }
    }

    /// The publisher's counter, for `GET /metrics`.
    pub(crate) fn metrics(&self) -> MetricFamily {
        MetricFamily::counter(
            "gleitzeit_task_events_unwatched",
            "Task events not published because no one watched their workflow (kept for catch-up).",
        )
        .with(&[], self.unwatched as f64)
    }

    fn send_events(&self, wf: &str, rooms: String, kept: &[Kept]) {
        match batch_payload(wf, kept) {
            Ok(payload) => (self.sink)(Envelope::with_text(
                Target::Room(rooms),
                events::EVENT_BATCH,
                payload,
            )),
            Err(e) => warn!(workflow = %wf, error = %e, "could not write an event batch"),
        }
    }
}

/// The `event_batch` payload as JSON text, the events' payloads written in as the log keeps
/// them (no event is turned into values or written again).
fn batch_payload(workflow_id: &str, events: &[Kept]) -> serde_json::Result<JsonText> {
    #[derive(Serialize)]
    struct Batch<'a> {
        workflow_id: &'a str,
        events: &'a [Kept],
    }
    JsonText::of(&Batch {
        workflow_id,
        events,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use gleitzeit_protocol::payloads::RoomsWatched;
    use gleitzeit_protocol::replies::EventBatch;
    use serde_json::{json, value::to_raw_value, value::RawValue, Value};

    use super::*;

    /// A payload as the machine writes it.
    fn raw(v: Value) -> Box<RawValue> {
        to_raw_value(&v).expect("json")
    }

    fn publisher() -> (Publisher, Arc<Mutex<Vec<Envelope>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let to = sent.clone();
        let sink: Sink = Box::new(move |env| to.lock().expect("lock").push(env));
        (Publisher::with_sink(sink), sent)
    }

    fn batches(sent: &Mutex<Vec<Envelope>>) -> Vec<EventBatch> {
        sent.lock()
            .expect("lock")
            .drain(..)
            .map(|env| {
                assert_eq!(env.event, events::EVENT_BATCH);
                env.raw
                    .expect("a batch as text")
                    .parse()
                    .expect("an event batch")
            })
            .collect()
    }

    fn seqs(batch: &EventBatch) -> Vec<u64> {
        batch.events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_burst_of_events_goes_out_as_one_envelope_with_contiguous_seqs() {
        let (mut p, sent) = publisher();
        for i in 0..50 {
            p.emit("w", events::TASK_STARTED, raw(json!({ "task_id": i })));
            p.emit("w", events::TASK_COMPLETED, raw(json!({ "task_id": i })));
        }
        assert!(
            sent.lock().expect("lock").is_empty(),
            "nothing before the flush"
        );
        p.flush();
        let out = batches(&sent);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].workflow_id, "w");
        assert_eq!(seqs(&out[0]), (1..=100).collect::<Vec<_>>());
        for e in &out[0].events {
            assert_eq!(e.payload["seq"], e.seq, "the payload carries its seq");
        }
        // The log keeps them for catch-up exactly as sent.
        let (kept, complete) = p.log.since("w", 0).expect("logged");
        assert!(complete);
        let kept: Vec<_> = kept.iter().map(Kept::to_logged).collect();
        assert_eq!(kept, out[0].events);
        p.flush();
        assert!(batches(&sent).is_empty(), "nothing pending: nothing sent");
    }

    #[test]
    fn a_lone_event_is_sent_by_the_flush_that_follows_it() {
        let (mut p, sent) = publisher();
        p.emit("w", events::TASK_STARTED, raw(json!({ "task_id": "a" })));
        p.flush();
        let out = batches(&sent);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].events.len(), 1);
        assert_eq!(out[0].events[0].event, events::TASK_STARTED);
        p.emit("w", events::TASK_COMPLETED, raw(json!({ "task_id": "a" })));
        p.flush();
        assert_eq!(seqs(&batches(&sent)[0]), [2]);
    }

    #[test]
    fn each_workflow_gets_its_own_envelope_to_its_rooms() {
        let (mut p, sent) = publisher();
        p.emit("a", events::TASK_STARTED, raw(json!({})));
        p.emit("b", events::TASK_STARTED, raw(json!({})));
        p.emit("a", events::TASK_COMPLETED, raw(json!({})));
        p.flush();
        let envs: Vec<Envelope> = sent.lock().expect("lock").clone();
        assert_eq!(envs.len(), 2);
        assert_eq!(envs[0].target, Target::Room("events,workflow:a".into()));
        assert_eq!(envs[1].target, Target::Room("events,workflow:b".into()));
        let out = batches(&sent);
        assert_eq!(seqs(&out[0]), [1, 2]);
        assert_eq!(seqs(&out[1]), [1]);
    }

    fn rooms_watched(reset: bool, watched: &[&str], unwatched: &[&str]) -> RoomsWatched {
        RoomsWatched {
            reset,
            watched: watched.iter().map(|s| s.to_string()).collect(),
            unwatched: unwatched.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Each envelope sent: its rooms and its events' names.
    fn sent_rooms(sent: &Mutex<Vec<Envelope>>) -> Vec<(String, Vec<String>)> {
        let envs: Vec<Envelope> = sent.lock().expect("lock").drain(..).collect();
        envs.into_iter()
            .map(|env| {
                let rooms = env.target.to_string();
                let batch: EventBatch = env.raw.expect("text").parse().expect("a batch");
                (rooms, batch.events.into_iter().map(|e| e.event).collect())
            })
            .collect()
    }

    #[test]
    fn task_events_go_out_only_while_someone_watches_them() {
        let (mut p, sent) = publisher();
        let all = "room:events,workflow:w";
        let everywhere = "room:events,workflow:w,summary:w";
        // Before the hub says who watches, everything goes out.
        p.emit("w", events::WORKFLOW_STARTED, raw(json!({})));
        p.emit("w", events::TASK_STARTED, raw(json!({})));
        p.flush();
        let out = sent_rooms(&sent);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0],
            (
                all.into(),
                vec!["workflow_started".into(), "task_started".into()]
            )
        );
        assert_eq!(
            out[1],
            ("room:summary:w".into(), vec!["workflow_started".into()])
        );
        // No one watches: the workflow's own events go to every room, task events nowhere.
        p.watchers
            .apply(rooms_watched(true, &["workflow:other"], &[]));
        p.emit("w", events::TASK_COMPLETED, raw(json!({})));
        p.flush();
        assert!(
            sent_rooms(&sent).is_empty(),
            "task events alone: nothing sent"
        );
        p.emit("w", events::TASK_STARTED, raw(json!({})));
        p.emit("w", events::WORKFLOW_COMPLETED, raw(json!({})));
        p.flush();
        assert_eq!(
            sent_rooms(&sent),
            vec![(everywhere.into(), vec!["workflow_completed".to_string()])]
        );
        // Someone joins the events room: task events of every workflow go out again; the
        // log kept the ones not sent.
        p.watchers.apply(rooms_watched(false, &["events"], &[]));
        p.emit("w", events::TASK_QUEUED, raw(json!({})));
        p.flush();
        assert_eq!(
            sent_rooms(&sent),
            vec![(all.into(), vec!["task_queued".to_string()])]
        );
        let (kept, _) = p.log.since("w", 0).expect("logged");
        assert_eq!(kept.len(), 6, "every event is in the log");
    }

    #[test]
    fn a_full_batch_goes_out_before_the_flush() {
        let (mut p, sent) = publisher();
        for i in 0..MAX_BATCH_EVENTS + 10 {
            p.emit("w", events::TASK_COMPLETED, raw(json!({ "task_id": i })));
        }
        assert_eq!(sent.lock().expect("lock").len(), 1);
        p.emit(
            "w",
            events::TASK_COMPLETED,
            raw(json!({ "big": "x".repeat(MAX_BATCH_BYTES) })),
        );
        assert_eq!(
            sent.lock().expect("lock").len(),
            2,
            "a batch past the byte bound"
        );
        p.flush();
        let out = batches(&sent);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].events.len(), MAX_BATCH_EVENTS);
        let all: Vec<u64> = out.iter().flat_map(seqs).collect();
        assert_eq!(all, (1..=MAX_BATCH_EVENTS as u64 + 11).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_loop_keeps_events_of_a_running_workflow_a_moment() {
        let (mut p, sent) = publisher();
        assert_eq!(p.due(), None, "nothing pending, nothing due");
        let start = Instant::now();
        p.emit("w", events::TASK_STARTED, raw(json!({ "task_id": "a" })));
        assert_eq!(p.due(), Some(start + IDLE_DELAY));
        p.flush_idle();
        assert!(batches(&sent).is_empty(), "a young lone event waits");
        tokio::time::advance(IDLE_DELAY / 2).await;
        p.emit("w", events::TASK_COMPLETED, raw(json!({ "task_id": "a" })));
        p.flush_idle();
        assert!(batches(&sent).is_empty());
        assert_eq!(
            p.due(),
            Some(start + IDLE_DELAY),
            "the oldest event sets the time"
        );
        tokio::time::advance(IDLE_DELAY / 2).await;
        p.flush_idle();
        assert_eq!(seqs(&batches(&sent)[0]), [1, 2], "both in one frame");
        assert_eq!(p.due(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_a_workflow_goes_out_with_the_next_idle_flush() {
        let (mut p, sent) = publisher();
        p.emit("a", events::TASK_COMPLETED, raw(json!({})));
        p.emit("b", events::TASK_COMPLETED, raw(json!({})));
        p.emit("b", events::WORKFLOW_COMPLETED, raw(json!({})));
        p.flush_idle();
        let out = batches(&sent);
        assert_eq!(out.len(), 3, "every batch pending goes with it");
        assert_eq!(out[1].events[1].event, events::WORKFLOW_COMPLETED);
        assert_eq!(seqs(&out[2]), [2], "the end alone to the summary room");
        p.emit("a", events::TASK_STARTED, raw(json!({})));
        p.flush_idle();
        assert!(batches(&sent).is_empty(), "the next event waits again");
    }

    #[tokio::test(start_paused = true)]
    async fn under_a_backlog_events_wait_at_most_the_delay_bound() {
        let (mut p, sent) = publisher();
        p.emit("w", events::TASK_STARTED, raw(json!({})));
        p.flush_overdue();
        assert!(
            batches(&sent).is_empty(),
            "young events wait for the idle loop"
        );
        tokio::time::advance(MAX_DELAY).await;
        p.emit("w", events::TASK_COMPLETED, raw(json!({})));
        p.flush_overdue();
        assert_eq!(seqs(&batches(&sent)[0]), [1, 2]);
        p.flush_overdue();
        assert!(batches(&sent).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn progress_times_of_workflows_gone_quiet_are_forgotten() {
        let (mut p, sent) = publisher();
        for i in 0..FORGET_PROGRESS_ABOVE + 1 {
            p.emit(&format!("w{i}"), events::WORKFLOW_PROGRESS, raw(json!({})));
        }
        p.flush();
        assert_eq!(batches(&sent).len(), FORGET_PROGRESS_ABOVE + 1);
        tokio::time::advance(PROGRESS_EVERY).await;
        p.emit("w0", events::WORKFLOW_PROGRESS, raw(json!({})));
        p.flush();
        assert_eq!(p.progress_sent.len(), 1, "only the one that just sent");
    }

    #[tokio::test(start_paused = true)]
    async fn progress_is_sent_at_a_bounded_rate_and_always_the_last_one() {
        let (mut p, sent) = publisher();
        let progress = |n: u64| raw(json!({ "finished_tasks": n }));
        p.emit("w", events::WORKFLOW_PROGRESS, progress(1));
        for n in 2..=5 {
            p.emit("w", events::WORKFLOW_PROGRESS, progress(n));
        }
        p.flush();
        let out = batches(&sent);
        assert_eq!(out[0].events.len(), 1, "the first at once, the rest held");
        assert_eq!(out[0].events[0].payload["finished_tasks"], 1);

        tokio::time::advance(PROGRESS_EVERY).await;
        p.flush();
        let out = batches(&sent);
        assert_eq!(
            out[0].events[0].payload["finished_tasks"], 5,
            "the newest held one"
        );
        assert_eq!(seqs(&out[0]), [2], "numbered when sent: no gap");

        p.emit("w", events::WORKFLOW_PROGRESS, progress(6));
        p.emit("w", events::WORKFLOW_COMPLETED, progress(6));
        p.flush();
        let out = batches(&sent);
        let names: Vec<&str> = out[0].events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(
            names,
            [events::WORKFLOW_PROGRESS, events::WORKFLOW_COMPLETED],
            "the final progress goes out before the final event"
        );
        assert_eq!(seqs(&out[0]), [3, 4]);
    }
}
