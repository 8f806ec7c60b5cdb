//! What the machine says of its tasks and workflows as JSON: the result the resolver
//! learns of a finished task, a task event's payload, and any event payload as text.

use std::sync::Arc;

use gleitzeit_protocol::replies::TaskEventRef;
use gleitzeit_store::{JsonText, TaskRecord, TaskStatus};
use serde::Serialize;
use serde_json::value::{to_raw_value, RawValue};
use serde_json::Value;

use super::{Wf, WfKey};

/// What the resolver learns of a finished task: a completed one's result, a failed one's
/// error as `{error}` (for `${<template>.results}` of a batch).
pub(crate) fn finished_result(t: &TaskRecord) -> Option<JsonText> {
    match t.status {
        TaskStatus::Completed => t.result.clone(),
        _ => t
            .error
            .as_ref()
            .and_then(|error| JsonText::of(&serde_json::json!({ "error": error })).ok()),
    }
}

/// What an event says, numbered (`seq`) only when it is published: a task event as the
/// task's facts, to be written once with its number in (a payload written first and then
/// spliced and checked again cost a fifth of the event path), or any other payload as JSON
/// text written without its number.
#[derive(Debug)]
pub(crate) enum EventPayload {
    /// A task event.
    Task(Box<TaskFacts>),
    /// Any other event's payload, without its `seq`.
    Text(Box<RawValue>),
}

/// A task's facts at the moment of its event (shared strings; the result's text copied, as
/// the record may let go of it once stored).
#[derive(Debug)]
pub(crate) struct TaskFacts {
    workflow_id: Arc<str>,
    task_id: Arc<str>,
    name: Arc<str>,
    method: Arc<str>,
    status: TaskStatus,
    attempt: u32,
    result: Option<JsonText>,
    error: Option<Value>,
    provider_id: Option<Arc<str>>,
    duration_seconds: Option<f64>,
}

impl From<Box<RawValue>> for EventPayload {
    fn from(text: Box<RawValue>) -> Self {
        EventPayload::Text(text)
    }
}

impl EventPayload {
    /// The payload with `"seq": seq` as its first member, as JSON text (as the event log
    /// writes it).
    #[cfg(test)]
    pub(crate) fn numbered(&self, seq: u64) -> Box<RawValue> {
        match self {
            EventPayload::Task(t) => {
                let mut out = Vec::new();
                let written = t.serialize_numbered(seq, &mut serde_json::Serializer::new(&mut out));
                written
                    .ok()
                    .and_then(|()| String::from_utf8(out).ok())
                    .and_then(|text| RawValue::from_string(text).ok())
                    .unwrap_or_else(|| RawValue::NULL.to_owned())
            }
            EventPayload::Text(text) => crate::events_log::numbered(text, seq),
        }
    }

    /// The payload as written without a number (for tests that read what the machine says).
    #[cfg(test)]
    pub(crate) fn unnumbered(&self) -> Box<RawValue> {
        match self {
            EventPayload::Task(t) => payload(t.as_ref_event()),
            EventPayload::Text(text) => text.clone(),
        }
    }
}

impl TaskFacts {
    fn as_ref_event(&self) -> TaskEventRef<'_> {
        TaskEventRef {
            workflow_id: &self.workflow_id,
            task_id: &self.task_id,
            task_name: &self.name,
            method: &self.method,
            status: self.status,
            attempt: self.attempt,
            result: self.result.as_ref(),
            error: self.error.as_ref(),
            provider_id: self.provider_id.as_deref(),
            endpoint: self.provider_id.as_deref(),
            duration_seconds: self.duration_seconds,
        }
    }

    /// Writes the event's payload with `"seq": seq` first (as [`EventPayload::numbered`]
    /// does) straight into `s`: the event log keeps a task event's facts and writes them
    /// only when they are sent or asked for.
    pub(crate) fn serialize_numbered<S: serde::Serializer>(
        &self,
        seq: u64,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        Numbered {
            seq,
            event: self.as_ref_event(),
        }
        .serialize(s)
    }

    /// About how long the written payload is (for the log's and the batches' byte bounds).
    pub(crate) fn approx_len(&self) -> usize {
        const FIXED: usize = 260;
        FIXED
            + 2 * self.workflow_id.len()
            + self.task_id.len()
            + self.name.len()
            + self.method.len()
            + self
                .result
                .as_ref()
                .and_then(JsonText::text)
                .map_or(0, str::len)
            + 2 * self.provider_id.as_deref().map_or(0, str::len)
            + self.error.as_ref().map_or(0, written_len)
    }
}

/// A task event with its number first.
#[derive(Serialize)]
struct Numbered<'a> {
    seq: u64,
    #[serde(flatten)]
    event: TaskEventRef<'a>,
}

/// How many bytes `value` takes written as JSON (counted, not kept: an error's details may
/// be long, and the log's byte bound must see them).
fn written_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => 0,
    }
}

/// The payload of a task event: the task's facts as its record has them now.
pub(super) fn task_event(key: &WfKey, wf: &Wf, i: usize) -> EventPayload {
    let t = &wf.tasks[i];
    let duration_seconds = match (t.started_at, t.finished_at) {
        (Some(s), Some(f)) => Some((f.saturating_sub(s)) as f64 / 1000.0),
        _ => None,
    };
    EventPayload::Task(Box::new(TaskFacts {
        workflow_id: key.clone(),
        task_id: t.task_id.clone(),
        name: t.name.clone(),
        method: t.method.clone(),
        status: t.status,
        attempt: t.attempts,
        result: t.result.clone(),
        error: t.error.clone(),
        provider_id: t.provider_id.clone(),
        duration_seconds,
    }))
}

/// An event payload as JSON text (the event log numbers it by writing in `seq`).
pub(crate) fn payload<T: serde::Serialize>(event: T) -> Box<RawValue> {
    // The payloads are structs of strings, numbers and JSON values: they always serialize.
    to_raw_value(&event).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A completed task's facts with this error.
    fn facts(error: Value) -> EventPayload {
        EventPayload::Task(Box::new(TaskFacts {
            workflow_id: Arc::from("w"),
            task_id: Arc::from("t"),
            name: Arc::from("n"),
            method: Arc::from("python/execute"),
            status: TaskStatus::Completed,
            attempt: 2,
            result: Some(JsonText::of(&json!({ "x": [1, "a\"b"] })).expect("json")),
            error: Some(error),
            provider_id: Some(Arc::from("p")),
            duration_seconds: Some(0.25),
        }))
    }

    #[test]
    fn a_task_event_is_written_with_its_number_first_as_the_log_once_spliced_it() {
        let event = facts(json!({ "code": "GZ3001" }));
        let text = event.numbered(41);
        assert!(text.get().starts_with(r#"{"seq":41,"workflow_id":"w","#));
        // Exactly the text the event log made by splicing the number into the payload.
        let spliced = crate::events_log::numbered(&event.unnumbered(), 41);
        assert_eq!(text.get(), spliced.get());
        let mut want: Value = serde_json::from_str(event.unnumbered().get()).expect("json");
        want["seq"] = json!(41);
        assert_eq!(
            serde_json::from_str::<Value>(text.get()).expect("json"),
            want
        );
        // Any other payload is spliced as before.
        let other = EventPayload::from(payload(json!({ "workflow_id": "w" })));
        assert_eq!(other.numbered(7).get(), r#"{"seq":7,"workflow_id":"w"}"#);
        // The log keeps the facts and writes the same text into a batch or a catch-up, and
        // its byte estimate is not below the text's length.
        let first = event.numbered(1);
        let mut log = crate::events_log::EventLog::default();
        let kept = log.record("w", "task_completed", event, 5);
        let entry: Value =
            serde_json::from_str(&serde_json::to_string(&kept).expect("written")).expect("json");
        assert_eq!(
            entry["payload"],
            serde_json::from_str::<Value>(first.get()).expect("json")
        );
        assert_eq!(entry["seq"], 1);
        let one = log.record(
            "w",
            "task_completed",
            facts(json!({ "code": "GZ3001", "message": "x".repeat(10_000) })),
            6,
        );
        let written = serde_json::to_value(&one).expect("written")["payload"].to_string();
        assert!(
            one.len() >= written.len(),
            "{} < {}",
            one.len(),
            written.len()
        );
    }
}
