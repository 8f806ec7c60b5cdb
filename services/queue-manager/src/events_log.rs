//! The event log: every workflow and task event the queue-manager publishes gets a
//! per-workflow sequence number (`seq` in its payload) and is kept in a bounded buffer, so a
//! client that lost its connection asks for the events after the last `seq` it saw
//! (`workflow_events`) and misses nothing.
//!
//! Sequence numbers start at 1 for a new workflow; a workflow resumed after a queue-manager
//! restart continues from a time-based number (milliseconds × 1000), so numbers only grow.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(test)]
use gleitzeit_protocol::replies::LoggedEvent;
use serde_json::value::RawValue;

use crate::machine::{EventPayload, TaskFacts};
#[cfg(test)]
use serde_json::Value;
#[cfg(test)]
use serde_json::{json, value::to_raw_value};

/// Events kept per workflow.
const MAX_EVENTS: usize = 50_000;
/// Bytes of serialized payloads kept per workflow (older events go first beyond it).
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// How long a finished workflow's events stay available.
const KEEP_FINISHED: Duration = Duration::from_secs(600);

/// One logged event as kept: a task event as the task's facts (shared strings), written
/// only when it is sent or asked for (most task events of a workflow nobody watches never
/// are); any other event's payload as JSON text with its number in. Its name is shared
/// with every other event of that name.
#[derive(Clone)]
pub(crate) struct Kept {
    pub(crate) seq: u64,
    pub(crate) event: Arc<str>,
    pub(crate) ts: u64,
    /// Shared with the batches that send it.
    pub(crate) payload: Logged,
    /// About how many bytes the payload takes written (exactly, for a text).
    len: usize,
}

/// A kept event's payload.
#[derive(Clone)]
pub(crate) enum Logged {
    /// A task event's facts, written with the event's `seq` when needed.
    Task(Arc<TaskFacts>),
    /// Any other payload, numbered.
    Text(Arc<RawValue>),
}

impl Kept {
    /// About how many bytes the payload takes written (exactly, for a text).
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The payload, written with its number.
struct Payload<'a>(&'a Kept);

impl serde::Serialize for Payload<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.payload {
            Logged::Task(facts) => facts.serialize_numbered(self.0.seq, s),
            Logged::Text(text) => text.serialize(s),
        }
    }
}

/// Written as a catch-up or batch entry (`LoggedEvent`'s shape), the payload as kept: a
/// catch-up of thousands of events is not parsed back into values to be written again.
impl serde::Serialize for Kept {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut entry = s.serialize_struct("LoggedEvent", 4)?;
        entry.serialize_field("seq", &self.seq)?;
        entry.serialize_field("event", &*self.event)?;
        entry.serialize_field("ts", &self.ts)?;
        entry.serialize_field("payload", &Payload(self))?;
        entry.end()
    }
}

impl Kept {
    #[cfg(test)]
    pub(crate) fn to_logged(&self) -> LoggedEvent {
        LoggedEvent {
            seq: self.seq,
            event: self.event.to_string(),
            ts: self.ts,
            payload: serde_json::to_value(Payload(self)).unwrap_or(Value::Null),
        }
    }
}

#[derive(Default)]
struct Log {
    next: u64,
    buf: VecDeque<Kept>,
    bytes: usize,
    finished: Option<Instant>,
}

/// Events of every workflow this queue-manager runs or recently ran.
#[derive(Default)]
pub(crate) struct EventLog {
    logs: HashMap<String, Log>,
    /// Event names seen so far (a handful), shared by the kept events.
    names: Vec<Arc<str>>,
}

impl EventLog {
    /// Starts numbering a workflow's events at `first`.
    pub(crate) fn open(&mut self, workflow: &str, first: u64) {
        self.logs.entry(workflow.to_string()).or_insert(Log {
            next: first.max(1),
            ..Log::default()
        });
    }

    /// The shared name `event`.
    fn name(&mut self, event: &str) -> Arc<str> {
        if let Some(n) = self.names.iter().find(|n| ***n == *event) {
            return n.clone();
        }
        let n: Arc<str> = Arc::from(event);
        self.names.push(n.clone());
        n
    }

    /// Numbers an event and keeps it (a task event as its facts, any other payload as
    /// text with its number written in, see [`numbered`]); returns what was kept (shared,
    /// not copied).
    pub(crate) fn record(
        &mut self,
        workflow: &str,
        event: &str,
        payload: EventPayload,
        ts: u64,
    ) -> Kept {
        let name = self.name(event);
        let log = match self.logs.get_mut(workflow) {
            Some(log) => log,
            None => self.logs.entry(workflow.to_string()).or_insert(Log {
                next: 1,
                ..Log::default()
            }),
        };
        let seq = log.next;
        log.next += 1;
        let (payload, len) = match payload {
            EventPayload::Task(facts) => {
                let len = facts.approx_len();
                (Logged::Task(Arc::from(facts)), len)
            }
            EventPayload::Text(text) => {
                let text: Arc<RawValue> = numbered(&text, seq).into();
                let len = text.get().len();
                (Logged::Text(text), len)
            }
        };
        let kept = Kept {
            seq,
            event: name,
            ts,
            payload,
            len,
        };
        log.bytes += kept.len();
        log.buf.push_back(kept.clone());
        while log.buf.len() > MAX_EVENTS || log.bytes > MAX_BYTES && log.buf.len() > 1 {
            match log.buf.pop_front() {
                Some(old) => log.bytes = log.bytes.saturating_sub(old.len()),
                None => break,
            }
        }
        kept
    }

    /// The workflow finished: its events are dropped after a while.
    pub(crate) fn finished(&mut self, workflow: &str) {
        if let Some(log) = self.logs.get_mut(workflow) {
            log.finished = Some(Instant::now());
        }
    }

    /// Whether this log numbers the events of `workflow`.
    pub(crate) fn knows(&self, workflow: &str) -> bool {
        self.logs.contains_key(workflow)
    }

    /// Events after `after_seq` (their texts shared, not copied), and whether none older
    /// than those were dropped.
    pub(crate) fn since(&self, workflow: &str, after_seq: u64) -> Option<(Vec<Kept>, bool)> {
        let log = self.logs.get(workflow)?;
        let first = log.buf.front().map(|e| e.seq).unwrap_or(log.next);
        let complete = first <= after_seq.saturating_add(1) || after_seq == 0 && first == 1;
        // Sequence numbers grow along the buffer: skip the older ones by binary search.
        let from = log.buf.partition_point(|e| e.seq <= after_seq);
        let events = log.buf.range(from..).cloned().collect();
        Some((events, complete))
    }

    /// Drops the logs of workflows finished long ago.
    pub(crate) fn collect(&mut self) {
        self.logs
            .retain(|_, l| l.finished.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
    }
}

/// `payload` with `"seq": seq` as its first member (a payload that is not a JSON object
/// is kept as it is). The text is spliced, not parsed into a tree and written again.
pub(crate) fn numbered(payload: &RawValue, seq: u64) -> Box<RawValue> {
    let text = payload.get().trim_start();
    let Some(rest) = text.strip_prefix('{') else {
        return payload.to_owned();
    };
    let rest = rest.trim_start();
    let spliced = if rest.starts_with('}') {
        format!("{{\"seq\":{seq}}}")
    } else {
        format!("{{\"seq\":{seq},{rest}")
    };
    // Valid JSON in, valid JSON out; checked all the same.
    RawValue::from_string(spliced).unwrap_or_else(|_| payload.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as the machine writes it.
    fn raw(v: Value) -> Box<RawValue> {
        to_raw_value(&v).expect("json")
    }

    #[test]
    fn the_sequence_number_is_written_into_any_object() {
        for (payload, want) in [
            (r#"{}"#, json!({ "seq": 3 })),
            (r#" { } "#, json!({ "seq": 3 })),
            (
                r#"{"a":1,"b":{"c":[]}}"#,
                json!({ "seq": 3, "a": 1, "b": { "c": [] } }),
            ),
            (r#"[1]"#, json!([1])),
            (r#"null"#, Value::Null),
        ] {
            let p = RawValue::from_string(payload.to_string()).expect("json");
            let out: Value = serde_json::from_str(numbered(&p, 3).get()).expect("json");
            assert_eq!(out, want, "{payload}");
        }
    }

    #[test]
    fn events_are_numbered_and_replayed_after_a_sequence_number() {
        let mut log = EventLog::default();
        for i in 0..5 {
            let e = log
                .record(
                    "w",
                    "task_completed",
                    EventPayload::Text(raw(json!({ "i": i }))),
                    0,
                )
                .to_logged();
            assert_eq!(e.payload["seq"], i + 1);
            assert_eq!(e.seq, i + 1);
        }
        let (events, complete) = log.since("w", 3).expect("known");
        assert!(complete);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
        assert!(log.since("other", 0).is_none());
    }

    #[test]
    fn a_resumed_workflow_continues_from_a_higher_number() {
        let mut log = EventLog::default();
        log.open("w", 1_000_000);
        let e = log
            .record("w", "e", EventPayload::Text(raw(json!({}))), 0)
            .to_logged();
        assert_eq!(e.payload["seq"], 1_000_000);
        let (_, complete) = log.since("w", 5).expect("known");
        assert!(!complete, "events 6..999999 are not available here");
    }

    #[test]
    fn kept_events_read_back_as_recorded_and_the_oldest_go_beyond_the_byte_limit() {
        let mut log = EventLog::default();
        let first = log
            .record(
                "w",
                "task_completed",
                EventPayload::Text(raw(json!({ "r": [1, "x", null] }))),
                7,
            )
            .to_logged();
        let (events, _) = log.since("w", 0).expect("known");
        assert_eq!(
            events.iter().map(Kept::to_logged).collect::<Vec<_>>(),
            vec![first]
        );
        assert!(log.knows("w") && !log.knows("v"));
        let big = "x".repeat(MAX_BYTES / 4);
        for _ in 0..5 {
            log.record(
                "w",
                "task_completed",
                EventPayload::Text(raw(json!({ "big": big }))),
                8,
            );
        }
        let (events, complete) = log.since("w", 0).expect("known");
        assert!(!complete, "the oldest events were dropped");
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].seq, 4);
        assert_eq!(events[2].to_logged().payload["seq"], 6);
    }
}
