//! Following a workflow's events until it ends, as `gz run` and `gz watch` do: a progress
//! bar, plain lines, progress lines at a bounded rate (a big run not on a terminal) or JSON
//! lines; events arrive in `event_batch` envelopes and are shown one by one, each once (by
//! `seq`), with a catch-up with
//! `workflow_events` after a reconnect (to the next hub of a mesh when the client's hub is
//! lost), and `workflow_get` polling as the fallback when an event is missed. Both reads
//! wait a few seconds per attempt, not the full request timeout. `event_line` is shared with `gz events`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use gleitzeit_hub_client::{HubClient, Incoming};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::replies::{EventsText, LoggedEventText};
use serde_json::{json, Value};

use crate::render;
use crate::workflow::{queue_manager, QM_TIMEOUT};

/// How events are shown while following a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// A one-line progress bar on stderr (a terminal).
    Bar,
    /// A plain line per event on stderr.
    Lines,
    /// Plain progress lines on stderr, at most one every [`PROGRESS_LINE_EVERY`], and the
    /// workflow's start and end: a big run not on a terminal.
    Summary,
    /// One JSON object per event on stdout.
    JsonLines,
}

/// Runs of up to this many tasks show each task when not on a terminal; bigger ones show
/// progress lines and a summary (unless `--each-task`).
pub const EACH_TASK_LIMIT: u64 = 50;

/// How often [`Follow::Summary`] prints a progress line.
pub const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(2);

impl Follow {
    /// How `gz run` shows a run of `total` tasks: a bar on a terminal; otherwise a line
    /// per event, or progress lines for more than [`EACH_TASK_LIMIT`] tasks unless
    /// `each_task`.
    pub fn for_run(total: u64, each_task: bool) -> Follow {
        Follow::choose(std::io::stderr().is_terminal(), total, each_task)
    }

    /// The room to watch workflow `id` in: a bar and a summary show the workflow's own
    /// events only (`summary:<id>`: a big run sends them a few messages, and its task
    /// events are not published at all when no one else watches); lines show every event
    /// (`workflow:<id>`).
    pub fn room(self, id: &str) -> String {
        match self {
            Follow::Bar | Follow::Summary => rooms::summary(id),
            Follow::Lines | Follow::JsonLines => rooms::workflow(id),
        }
    }

    /// Does this mode show task events (so a gap in the `seq`s is worth a catch-up)?
    fn shows_tasks(self) -> bool {
        matches!(self, Follow::Lines | Follow::JsonLines)
    }

    fn choose(terminal: bool, total: u64, each_task: bool) -> Follow {
        if terminal {
            Follow::Bar
        } else if each_task || total <= EACH_TASK_LIMIT {
            Follow::Lines
        } else {
            Follow::Summary
        }
    }
}

/// True when a `workflow_get` reply shows a finished workflow.
pub fn is_terminal(reply: &Value) -> bool {
    matches!(
        reply["workflow"]["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

pub fn is_terminal_event(event: &str) -> bool {
    matches!(
        event,
        events::WORKFLOW_COMPLETED | events::WORKFLOW_FAILED | events::WORKFLOW_CANCELLED
    )
}

/// Progress counters for the bar.
#[derive(Default)]
struct Counts {
    total: u64,
    finished: u64,
    failed: u64,
    skipped: u64,
}

impl Counts {
    fn from_progress(p: &Value, total: u64) -> Counts {
        let n = |k: &str| p.get(k).and_then(Value::as_u64).unwrap_or(0);
        Counts {
            total: p
                .get("total_tasks")
                .and_then(Value::as_u64)
                .unwrap_or(total),
            finished: n("finished_tasks"),
            failed: n("failed_tasks"),
            skipped: n("skipped_tasks"),
        }
    }

    fn from_reply(reply: &Value) -> Counts {
        if let Some(c) = reply.get("counts").filter(|c| c.is_object()) {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            return Counts {
                total: n("total"),
                finished: n("finished"),
                failed: n("failed"),
                skipped: n("skipped"),
            };
        }
        let tasks = reply["tasks"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let st = |s: &str| tasks.iter().filter(|t| t["status"] == s).count() as u64;
        Counts {
            total: reply["workflow"]["total_tasks"]
                .as_u64()
                .unwrap_or(tasks.len() as u64),
            finished: st("completed") + st("failed") + st("skipped") + st("cancelled"),
            failed: st("failed"),
            skipped: st("skipped"),
        }
    }

    fn bar(&self) -> String {
        const WIDTH: u64 = 30;
        let filled = (self.finished.min(self.total) * WIDTH)
            .checked_div(self.total)
            .unwrap_or(WIDTH);
        let mut s = format!(
            "[{}{}] {}/{} done",
            "#".repeat(filled as usize),
            ".".repeat((WIDTH - filled) as usize),
            self.finished,
            self.total
        );
        if self.failed > 0 {
            s.push_str(&format!(", {} failed", self.failed));
        }
        if self.skipped > 0 {
            s.push_str(&format!(", {} skipped", self.skipped));
        }
        s
    }

    /// A plain progress line: `progress: 1200/10000 tasks done, 3 failed`.
    fn line(&self) -> String {
        let mut s = format!("progress: {}/{} tasks done", self.finished, self.total);
        if self.failed > 0 {
            s.push_str(&format!(", {} failed", self.failed));
        }
        if self.skipped > 0 {
            s.push_str(&format!(", {} skipped", self.skipped));
        }
        s
    }
}

fn draw_bar(counts: &Counts) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{}", counts.bar());
    let _ = err.flush();
}

/// Whether `mode` shows anything of `event` beyond its number: a progress bar and a summary
/// of a big run look at the workflow's own events only, so the payloads of its task events
/// (three per task) are never parsed (a third of `gz run`'s CPU for 10,000 tasks was
/// spent building them into values).
fn needs_payload(mode: Follow, event: &str) -> bool {
    match mode {
        Follow::JsonLines | Follow::Lines => true,
        Follow::Bar => event == events::WORKFLOW_PROGRESS || is_terminal_event(event),
        Follow::Summary => {
            event == events::WORKFLOW_PROGRESS
                || event == events::WORKFLOW_STARTED
                || is_terminal_event(event)
        }
    }
}

/// A plain line describing an event, if it is worth one.
/// Events already shown (by `seq`), so a catch-up after a reconnect shows each event once.
#[derive(Default)]
struct Shown {
    seen: std::collections::HashSet<u64>,
    last_seq: u64,
    /// The highest `seq` shown.
    max_seq: u64,
    /// When [`Follow::Summary`] last printed a progress line.
    last_line: Option<Instant>,
}

impl Shown {
    /// Shows one event (unless already shown, by its `seq`); true when it ends the workflow.
    /// `payload` may be null when the mode shows nothing of the event's payload
    /// ([`needs_payload`]).
    #[allow(clippy::too_many_arguments)]
    fn show(
        &mut self,
        mode: Follow,
        event: &str,
        ts: u64,
        seq: Option<u64>,
        payload: &Value,
        counts: &mut Counts,
        stream: &mut StreamedText,
    ) -> bool {
        if let Some(seq) = seq {
            if !self.seen.insert(seq) {
                return false;
            }
            self.max_seq = self.max_seq.max(seq);
            // The highest number up to which every event was shown.
            while self.seen.contains(&(self.last_seq + 1)) {
                self.last_seq += 1;
            }
        }
        match mode {
            Follow::JsonLines => {
                println!(
                    "{}",
                    json!({ "event": event, "ts": ts, "payload": payload })
                );
            }
            Follow::Lines => {
                if event == events::TASK_PROGRESS {
                    stream.show(payload);
                } else if let Some(line) = event_line(event, payload) {
                    stream.end();
                    eprintln!("{line}");
                }
            }
            Follow::Bar => {
                if event == events::WORKFLOW_PROGRESS || is_terminal_event(event) {
                    *counts = Counts::from_progress(payload, counts.total);
                    draw_bar(counts);
                }
            }
            Follow::Summary => {
                if event == events::WORKFLOW_PROGRESS {
                    *counts = Counts::from_progress(payload, counts.total);
                    if self
                        .last_line
                        .is_none_or(|t| t.elapsed() >= PROGRESS_LINE_EVERY)
                    {
                        self.last_line = Some(Instant::now());
                        eprintln!("{}", counts.line());
                    }
                } else if event == events::WORKFLOW_STARTED || is_terminal_event(event) {
                    if let Some(line) = event_line(event, payload) {
                        eprintln!("{line}");
                    }
                }
            }
        }
        is_terminal_event(event)
    }

    /// Some event before the last one shown has not been seen: missed (published before
    /// the queue-manager knew of this watcher, or lost), so worth a catch-up.
    fn has_gap(&self) -> bool {
        self.max_seq > self.last_seq
    }

    /// Shows the events an envelope from the rooms carries (one, or an `event_batch`) that
    /// belong to workflow `id`; true when they include its end.
    fn show_envelope(
        &mut self,
        mode: Follow,
        id: &str,
        env: gleitzeit_protocol::Envelope,
        counts: &mut Counts,
        stream: &mut StreamedText,
    ) -> bool {
        if let Some(batch) = EventsText::of_batch(&env) {
            return batch.workflow_id == id && self.show_all(mode, &batch.events, counts, stream);
        }
        if env.payload.get("workflow_id").and_then(Value::as_str) != Some(id) {
            return false;
        }
        let seq = env.payload.get("seq").and_then(Value::as_u64);
        self.show(mode, &env.event, env.ts, seq, &env.payload, counts, stream)
    }

    /// Shows logged events (of a batch or a catch-up), parsing the payloads of those the
    /// mode shows more of than their number; true when they include the workflow's end.
    fn show_all(
        &mut self,
        mode: Follow,
        events: &[LoggedEventText],
        counts: &mut Counts,
        stream: &mut StreamedText,
    ) -> bool {
        for e in events {
            let payload = if needs_payload(mode, &e.event) {
                e.payload_value()
            } else {
                Value::Null
            };
            if self.show(mode, &e.event, e.ts, Some(e.seq), &payload, counts, stream) {
                return true;
            }
        }
        false
    }
}

/// Streamed LLM text (`task_progress`) shown as it arrives: `task x> text…` on one line.
#[derive(Default)]
struct StreamedText {
    task: Option<String>,
}

impl StreamedText {
    fn show(&mut self, p: &Value) {
        use std::io::Write;
        let task = p["task_id"].as_str().unwrap_or("?");
        if self.task.as_deref() != Some(task) {
            self.end();
            eprint!("task {task}> ");
            self.task = Some(task.to_string());
        }
        eprint!("{}", p["text"].as_str().unwrap_or_default());
        let _ = std::io::stderr().flush();
    }

    fn end(&mut self) {
        if self.task.take().is_some() {
            eprintln!();
        }
    }
}

pub fn event_line(event: &str, p: &Value) -> Option<String> {
    let task = p["task_id"].as_str().unwrap_or("?");
    let dur = p["duration_seconds"]
        .as_f64()
        .map(|d| format!(" ({})", render::seconds(d)))
        .unwrap_or_default();
    let line = match event {
        events::WORKFLOW_STARTED => format!(
            "workflow {} started",
            p["workflow_id"].as_str().unwrap_or("?")
        ),
        events::TASK_STARTED => {
            let on = p["provider_id"]
                .as_str()
                .map(|x| format!(" on {x}"))
                .unwrap_or_default();
            format!("task {task} started{on}")
        }
        events::TASK_COMPLETED => format!("task {task} completed{dur}"),
        events::TASK_FAILED => format!("task {task} failed: {}", render::error_short(&p["error"])),
        events::TASK_RETRYING => format!(
            "task {task} retrying after attempt {}: {}",
            p["attempt"].as_u64().unwrap_or(0),
            render::error_short(&p["error"])
        ),
        events::TASK_SKIPPED => {
            format!("task {task} skipped: {}", render::error_short(&p["error"]))
        }
        events::WORKFLOW_PROGRESS => return None,
        e if is_terminal_event(e) => {
            let c = Counts::from_progress(p, 0);
            format!(
                "workflow {} {}: {}/{} tasks finished, {} failed, {} skipped",
                p["workflow_id"].as_str().unwrap_or("?"),
                p["status"].as_str().unwrap_or(e),
                c.finished,
                c.total,
                c.failed,
                c.skipped
            )
        }
        _ => return None,
    };
    Some(line)
}

/// Shows the events published after the last one shown (asked from the queue-manager);
/// true when they include the workflow's end.
async fn catch_up(
    client: &HubClient,
    id: &str,
    mode: Follow,
    shown: &mut Shown,
    counts: &mut Counts,
    stream: &mut StreamedText,
) -> bool {
    let payload = json!({ "workflow_id": id, "after_seq": shown.last_seq });
    // Read with the payloads kept as text (`EventsText`): a catch-up of a big run's first
    // events holds thousands of task events.
    let Ok(reply) = client
        .request_retrying_as::<EventsText>(
            queue_manager(),
            events::WORKFLOW_EVENTS,
            payload,
            QM_TIMEOUT,
            ATTEMPT,
        )
        .await
    else {
        return false;
    };
    shown.show_all(mode, &reply.events, counts, stream)
}

/// Catch-ups for events missed while connected (a gap in the `seq`s) at most this often:
/// a queue-manager whose log no longer holds them would otherwise be asked on every batch.
const GAP_FILL_EVERY: Duration = Duration::from_secs(1);

/// How long one read while following waits for its reply. Reads are safe to repeat, and
/// after a hub of a mesh died a request may have gone to a component on it (the other hubs
/// forget its components only after their heartbeat timeout): asking again soon beats
/// waiting out the 30 s request timeout.
const ATTEMPT: Duration = Duration::from_secs(4);

/// The workflow's summary (`workflow_get` with `summary: true`), waiting at most [`ATTEMPT`].
async fn poll(client: &HubClient, id: &str) -> Result<Value, GzError> {
    let payload = json!({ "workflow_id": id, "summary": true });
    client
        .request_with_timeout(queue_manager(), events::WORKFLOW_GET, payload, ATTEMPT)
        .await
}

/// Shows the workflow's events until it is terminal (by event, or by polling
/// `workflow_get` as a fallback, since events can be missed).
pub async fn follow(
    client: &HubClient,
    incoming: &mut Incoming,
    id: &str,
    mode: Follow,
    total: u64,
    timeout: Option<Duration>,
) -> Result<(), GzError> {
    let start = Instant::now();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut counts = Counts {
        total,
        ..Counts::default()
    };
    if mode == Follow::Bar {
        draw_bar(&counts);
    }
    let mut next_poll = tokio::time::Instant::now() + Duration::from_secs(1);
    let interrupt = gleitzeit_runtime::signal_shutdown();
    tokio::pin!(interrupt);
    let mut stream = StreamedText::default();
    let mut shown = Shown::default();
    let mut connection = client.connection_watch();
    let mut last_gap_fill = None;
    if catch_up(client, id, mode, &mut shown, &mut counts, &mut stream).await {
        return Ok(());
    }
    let outcome = loop {
        let sleep_deadline = deadline.map_or(next_poll, |d| d.min(next_poll));
        tokio::select! {
            env = incoming.recv() => {
                let Some(env) = env else {
                    break Err(GzError::new(ErrorCode::Disconnected, "the connection to the hub closed"));
                };
                if shown.show_envelope(mode, id, env, &mut counts, &mut stream) {
                    break Ok(());
                }
                if mode.shows_tasks()
                    && shown.has_gap()
                    && last_gap_fill.is_none_or(|t: Instant| t.elapsed() >= GAP_FILL_EVERY)
                {
                    last_gap_fill = Some(Instant::now());
                    if catch_up(client, id, mode, &mut shown, &mut counts, &mut stream).await {
                        break Ok(());
                    }
                }
            }
            changed = connection.changed() => {
                if changed.is_err() || !*connection.borrow() {
                    continue;
                }
                // Reconnected: fetch what was published while the connection was down.
                if catch_up(client, id, mode, &mut shown, &mut counts, &mut stream).await {
                    break Ok(());
                }
            }
            _ = tokio::time::sleep_until(sleep_deadline) => {
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    break Err(GzError::new(
                        ErrorCode::WorkflowTimeout,
                        format!("gave up waiting for workflow {id} after {}; it was not cancelled", render::seconds(start.elapsed().as_secs_f64())),
                    ).with_hint(format!("follow it with `gz watch {id}`, or stop it with `gz cancel {id}`")));
                }
                let asked = Instant::now();
                if let Ok(reply) = poll(client, id).await {
                    if mode == Follow::Bar {
                        counts = Counts::from_reply(&reply);
                        draw_bar(&counts);
                    }
                    if is_terminal(&reply) {
                        break Ok(());
                    }
                }
                // Large workflows make big replies: poll less often when a poll is slow.
                let wait = Duration::from_secs(1).max(asked.elapsed() * 4);
                next_poll = tokio::time::Instant::now() + wait;
            }
            _ = &mut interrupt => {
                break Err(GzError::new(ErrorCode::Cancelled, format!("interrupted while waiting for workflow {id}"))
                    .with_hint(format!("the workflow was not cancelled; follow it with `gz watch {id}`")));
            }
        }
    };
    if mode == Follow::Bar {
        eprintln!();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use gleitzeit_protocol::records::JsonText;
    use gleitzeit_protocol::replies::{EventBatch, LoggedEvent};
    use gleitzeit_protocol::{Envelope, Target};

    use super::*;

    fn batch(workflow: &str) -> EventBatch {
        let entry = |seq: u64, event: &str, payload: Value| LoggedEvent {
            seq,
            event: event.into(),
            ts: 1000 + seq,
            payload,
        };
        let task = |seq: u64, status: &str| json!({ "seq": seq, "workflow_id": workflow, "task_id": "a", "status": status });
        let progress = |seq: u64| {
            json!({ "seq": seq, "workflow_id": workflow, "status": "completed", "total_tasks": 2,
                    "finished_tasks": 2, "failed_tasks": 0, "skipped_tasks": 0 })
        };
        EventBatch {
            workflow_id: workflow.into(),
            events: vec![
                entry(1, events::TASK_QUEUED, task(1, "queued")),
                entry(2, events::TASK_COMPLETED, task(2, "completed")),
                entry(3, events::WORKFLOW_PROGRESS, progress(3)),
                entry(4, events::WORKFLOW_COMPLETED, progress(4)),
            ],
        }
    }

    fn as_text(batch: &EventBatch) -> Envelope {
        let target = Target::Room("events".into());
        Envelope::with_text(
            target,
            events::EVENT_BATCH,
            JsonText::of(batch).expect("json"),
        )
    }

    #[test]
    fn a_batch_kept_as_text_is_shown_once_and_its_end_is_seen() {
        for mode in [
            Follow::Bar,
            Follow::Summary,
            Follow::Lines,
            Follow::JsonLines,
        ] {
            let (mut shown, mut counts, mut stream) =
                (Shown::default(), Counts::default(), StreamedText::default());
            let env = as_text(&batch("w"));
            assert!(
                shown.show_envelope(mode, "w", env.clone(), &mut counts, &mut stream),
                "{mode:?}: the end is seen"
            );
            assert_eq!(shown.last_seq, 4, "{mode:?}: every event counted");
            if matches!(mode, Follow::Bar | Follow::Summary) {
                assert_eq!(
                    (counts.finished, counts.total),
                    (2, 2),
                    "{mode:?}: progress read"
                );
            }
            assert!(
                !shown.show_envelope(mode, "w", env, &mut counts, &mut stream),
                "{mode:?}: each event once"
            );
        }
    }

    #[test]
    fn another_workflows_batch_and_a_batch_of_values_are_told_apart() {
        let (mut shown, mut counts, mut stream) =
            (Shown::default(), Counts::default(), StreamedText::default());
        let other = as_text(&batch("v"));
        assert!(!shown.show_envelope(Follow::Summary, "w", other, &mut counts, &mut stream));
        assert_eq!(shown.last_seq, 0, "nothing of another workflow");
        // A batch whose payload was parsed into values (not kept as text) reads the same.
        let values = Envelope::new(
            Target::Room("events".into()),
            events::EVENT_BATCH,
            serde_json::to_value(batch("w")).expect("json"),
        );
        assert!(shown.show_envelope(Follow::Summary, "w", values, &mut counts, &mut stream));
        assert_eq!(shown.last_seq, 4);
    }

    #[test]
    fn only_the_shown_events_payloads_are_parsed() {
        assert!(!needs_payload(Follow::Bar, events::TASK_COMPLETED));
        assert!(!needs_payload(Follow::Summary, events::TASK_STARTED));
        assert!(needs_payload(Follow::Bar, events::WORKFLOW_PROGRESS));
        assert!(needs_payload(Follow::Summary, events::WORKFLOW_STARTED));
        assert!(needs_payload(Follow::Summary, events::WORKFLOW_FAILED));
        assert!(needs_payload(Follow::Lines, events::TASK_COMPLETED));
        assert!(needs_payload(Follow::JsonLines, events::TASK_QUEUED));
    }
}
