//! The event log: every workflow and task event the queue-manager publishes gets a
//! per-workflow sequence number (`seq` in its payload) and is kept in a bounded buffer, so a
//! client that lost its connection asks for the events after the last `seq` it saw
//! (`workflow_events`) and misses nothing.
//!
//! Sequence numbers start at 1 for a new workflow; a workflow resumed after a queue-manager
//! restart continues from a time-based number (milliseconds × 1000), so numbers only grow.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use gleitzeit_protocol::replies::LoggedEvent;
use serde_json::{json, Value};

/// Events kept per workflow.
const MAX_EVENTS: usize = 50_000;
/// How long a finished workflow's events stay available.
const KEEP_FINISHED: Duration = Duration::from_secs(600);

#[derive(Default)]
struct Log {
    next: u64,
    buf: VecDeque<LoggedEvent>,
    finished: Option<Instant>,
}

/// Events of every workflow this queue-manager runs or recently ran.
#[derive(Default)]
pub(crate) struct EventLog {
    logs: HashMap<String, Log>,
}

impl EventLog {
    /// Starts numbering a workflow's events at `first`.
    pub(crate) fn open(&mut self, workflow: &str, first: u64) {
        self.logs.entry(workflow.to_string()).or_insert(Log {
            next: first.max(1),
            ..Log::default()
        });
    }

    /// Numbers an event (writes `seq` into the payload) and keeps it; returns it.
    pub(crate) fn record(
        &mut self,
        workflow: &str,
        event: &str,
        mut payload: Value,
        ts: u64,
    ) -> LoggedEvent {
        let log = self.logs.entry(workflow.to_string()).or_insert(Log {
            next: 1,
            ..Log::default()
        });
        let seq = log.next;
        log.next += 1;
        if let Value::Object(map) = &mut payload {
            map.insert("seq".into(), json!(seq));
        }
        let logged = LoggedEvent {
            seq,
            event: event.to_string(),
            ts,
            payload,
        };
        log.buf.push_back(logged.clone());
        if log.buf.len() > MAX_EVENTS {
            log.buf.pop_front();
        }
        logged
    }

    /// The workflow finished: its events are dropped after a while.
    pub(crate) fn finished(&mut self, workflow: &str) {
        if let Some(log) = self.logs.get_mut(workflow) {
            log.finished = Some(Instant::now());
        }
    }

    /// Events after `after_seq`, and whether none older than those were dropped.
    pub(crate) fn since(&self, workflow: &str, after_seq: u64) -> Option<(Vec<LoggedEvent>, bool)> {
        let log = self.logs.get(workflow)?;
        let first = log.buf.front().map(|e| e.seq).unwrap_or(log.next);
        let complete = first <= after_seq.saturating_add(1) || after_seq == 0 && first == 1;
        let events = log
            .buf
            .iter()
            .filter(|e| e.seq > after_seq)
            .cloned()
            .collect();
        Some((events, complete))
    }

    /// Drops the logs of workflows finished long ago.
    pub(crate) fn collect(&mut self) {
        self.logs
            .retain(|_, l| l.finished.is_none_or(|t| t.elapsed() < KEEP_FINISHED));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_numbered_and_replayed_after_a_sequence_number() {
        let mut log = EventLog::default();
        for i in 0..5 {
            let e = log.record("w", "task_completed", json!({ "i": i }), 0);
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
        let e = log.record("w", "e", json!({}), 0);
        assert_eq!(e.payload["seq"], 1_000_000);
        let (_, complete) = log.since("w", 5).expect("known");
        assert!(!complete, "events 6..999999 are not available here");
    }
}
