//! Typed replies and events: what clients (the CLI, the Python SDK, dashboards) read back
//! from the queue-manager and the hub, and the workflow and task events of the rooms. Each serializes to the JSON documented in `docs/protocol.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::collections::BTreeMap;

use crate::envelope::Envelope;
use crate::events;
use crate::records::{TaskRecord, WorkflowRecord};
use crate::status::{TaskStatus, WorkflowStatus};

/// Reply to `workflow_submit`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SubmitReply {
    /// The new workflow's id.
    pub workflow_id: String,
    /// How many tasks it has.
    pub total_tasks: usize,
}

/// Reply to `workflow_cancel`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct CancelReply {
    /// Workflow id.
    pub workflow_id: String,
    /// False when it had finished already.
    pub cancelled: bool,
    /// Its status now.
    pub status: WorkflowStatus,
}

/// One event of a workflow as the queue-manager logged it (for catch-up).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct LoggedEvent {
    /// Sequence number within the workflow.
    pub seq: u64,
    /// Event name, e.g. `task_completed`.
    pub event: String,
    /// When it was sent (ms since the epoch).
    pub ts: u64,
    /// Its payload (carrying `seq` too).
    pub payload: Value,
}

/// A [`LoggedEvent`] whose payload stays JSON text until it is needed: a watcher that shows
/// most events by their name and number only (a progress bar) reads a batch or a catch-up
/// of thousands of task events without building a tree of values for each.
#[derive(Debug, Clone, Deserialize)]
pub struct LoggedEventText {
    /// Sequence number within the workflow.
    pub seq: u64,
    /// Event name, e.g. `task_completed`.
    pub event: String,
    /// When it was sent (ms since the epoch).
    pub ts: u64,
    /// Its payload as JSON text (carrying `seq` too).
    pub payload: Box<serde_json::value::RawValue>,
}

impl LoggedEventText {
    /// The payload parsed (null when it is not JSON, which a payload read as JSON text
    /// always is).
    pub fn payload_value(&self) -> Value {
        serde_json::from_str(self.payload.get()).unwrap_or(Value::Null)
    }
}

/// An [`EventBatch`] or a [`WorkflowEventsReply`] with its events' payloads kept as text
/// ([`LoggedEventText`]); the two have the same entries.
#[derive(Debug, Clone, Deserialize)]
pub struct EventsText {
    /// Workflow id.
    pub workflow_id: String,
    /// The events, in `seq` order.
    pub events: Vec<LoggedEventText>,
}

impl EventsText {
    /// The events of an `event_batch` envelope, payloads kept as text; `None` for another
    /// event, or a batch that does not decode.
    pub fn of_batch(env: &Envelope) -> Option<EventsText> {
        if env.event != events::EVENT_BATCH {
            return None;
        }
        env.payload_as().ok()
    }
}

/// Reply to `workflow_events`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowEventsReply {
    /// Workflow id.
    pub workflow_id: String,
    /// The events after the asked sequence number, in order.
    pub events: Vec<LoggedEvent>,
    /// False when older events than those were dropped (or are kept elsewhere).
    pub complete: bool,
}

/// Payload of `event_batch`: workflow and task events of one workflow that the
/// queue-manager published together (those made while it worked through the messages
/// waiting for it), oldest first, with consecutive `seq`s. A lone event travels as a batch
/// of one. Each entry has the shape of a
/// catch-up entry, so a client handles live batches and `workflow_events` replies alike.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct EventBatch {
    /// Workflow id.
    pub workflow_id: String,
    /// The events, in `seq` order.
    pub events: Vec<LoggedEvent>,
}

impl EventBatch {
    /// The events an envelope from a room carries, each as an envelope of its own (event
    /// name, payload and `ts` from the entry; source, target and identity from `env`): the
    /// entries of an `event_batch`, or `env` itself for any other event. A batch that does
    /// not decode gives nothing.
    pub fn unpack(env: Envelope) -> Vec<Envelope> {
        if env.event != events::EVENT_BATCH {
            return vec![env];
        }
        // Read from its text when the client kept it so (`events::READ_AS_TEXT`): one pass
        // into the entries, where a tree of values first and the entries from it after took
        // a third of `gz run`'s CPU for a 10,000-task workflow.
        let Ok(batch) = env.payload_as::<EventBatch>() else {
            return Vec::new();
        };
        let Envelope {
            v,
            id,
            correlation_id,
            source,
            target,
            auth,
            ..
        } = env;
        batch
            .events
            .into_iter()
            .map(|e| Envelope {
                v,
                id: id.clone(),
                correlation_id: correlation_id.clone(),
                source: source.clone(),
                target: target.clone(),
                event: e.event,
                payload: e.payload,
                auth: auth.clone(),
                ts: e.ts,
                part: None,
                raw: None,
                pieces: None,
            })
            .collect()
    }
}

/// Reply to `workflow_owner`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct OwnerReply {
    /// Workflow id.
    pub workflow_id: String,
    /// The user who submitted it (none for workflows stored before identities existed, or
    /// unknown workflows).
    pub owner: Option<String>,
}

/// Payload of the `task_*` events.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskEvent {
    /// Workflow id.
    pub workflow_id: String,
    /// Task id.
    pub task_id: String,
    /// Task name.
    pub task_name: String,
    /// Method.
    pub method: String,
    /// Status after the change.
    pub status: TaskStatus,
    /// Attempt number.
    pub attempt: u32,
    /// Result (completed tasks).
    pub result: Option<Value>,
    /// Error (failed, retrying, skipped tasks).
    pub error: Option<Value>,
    /// The provider that ran it.
    pub provider_id: Option<String>,
    /// The endpoint that served it (same as `provider_id` today).
    pub endpoint: Option<String>,
    /// How long the attempt ran.
    pub duration_seconds: Option<f64>,
    /// The workflow's event sequence number (1, 2, …), set when the queue-manager logs the
    /// event; `workflow_events` catches up after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// A [`TaskEvent`] that borrows its parts, for writing one as JSON without copying the
/// task's result first (the queue-manager's task events). Serializes exactly as the
/// [`TaskEvent`] with the same values; `seq` is added when the event is logged.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TaskEventRef<'a> {
    /// Workflow id.
    pub workflow_id: &'a str,
    /// Task id.
    pub task_id: &'a str,
    /// Task name.
    pub task_name: &'a str,
    /// Method.
    pub method: &'a str,
    /// Status after the change.
    pub status: TaskStatus,
    /// Attempt number.
    pub attempt: u32,
    /// Result (completed tasks).
    pub result: Option<&'a crate::records::JsonText>,
    /// Error (failed, retrying, skipped tasks).
    pub error: Option<&'a Value>,
    /// The provider that ran it.
    pub provider_id: Option<&'a str>,
    /// The endpoint that served it (same as `provider_id` today).
    pub endpoint: Option<&'a str>,
    /// How long the attempt ran.
    pub duration_seconds: Option<f64>,
}

/// Payload of `workflow_submitted`, `workflow_started`, `workflow_progress`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowProgress {
    /// Workflow id.
    pub workflow_id: String,
    /// Workflow name.
    pub name: String,
    /// Its status.
    pub status: WorkflowStatus,
    /// Tasks in all.
    pub total_tasks: usize,
    /// Tasks completed.
    pub completed_tasks: usize,
    /// Tasks failed.
    pub failed_tasks: usize,
    /// Tasks skipped.
    pub skipped_tasks: usize,
    /// Tasks in a final status (completed, failed, skipped, cancelled).
    pub finished_tasks: usize,
    /// The workflow's event sequence number (1, 2, …), set when the queue-manager logs the
    /// event; `workflow_events` catches up after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

/// Payload of `workflow_completed`, `workflow_failed`, `workflow_cancelled`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowFinished {
    /// Its final progress.
    #[serde(flatten)]
    pub progress: WorkflowProgress,
    /// Why it failed or was cancelled.
    pub error: Option<Value>,
    /// Results by task id (workflows of up to 1,000 tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_results: Option<BTreeMap<String, crate::records::JsonText>>,
}

/// Payload of `task_progress` (providers → rooms): partial output of a running task, such
/// as streamed LLM tokens.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskProgress {
    /// Workflow id.
    pub workflow_id: String,
    /// Task id.
    pub task_id: String,
    /// Attempt number.
    pub attempt: u32,
    /// The next piece of output.
    pub text: String,
}

/// Reply to `workflow_get`: the workflow (without its spec), its task counts, and its tasks
/// (none with `summary: true`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowDetail {
    /// The workflow record (`spec` is null).
    pub workflow: WorkflowRecord,
    /// `total`, `finished` and one count per task status.
    pub counts: BTreeMap<String, u64>,
    /// Every task (of `status` when asked), or one page of them (`offset`, `limit`).
    pub tasks: Vec<TaskRecord>,
    /// A page was asked for and more tasks follow it: the `offset` of the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

/// Reply to `heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct HeartbeatReply {
    /// False when this socket is not registered (not an error).
    pub registered: bool,
}

/// Reply to `deregister`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct DeregisterReply {
    /// Whether the socket was registered.
    pub removed: bool,
}

/// Reply to `subscribe` and `unsubscribe`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RoomsReply {
    /// Every room the socket is now in.
    pub rooms: Vec<String>,
}

/// Payload of `shutdown_request`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ShutdownRequest {
    /// `all`: every registered component is told to shut down too.
    #[serde(default)]
    pub scope: Option<String>,
}

/// Reply to `shutdown_request`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ShutdownReply {
    /// Always true.
    pub stopping: bool,
    /// Whether every component was told to shut down.
    pub components: bool,
}

/// Payload of `shutdown` and `hub_shutting_down`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Reason {
    /// Why.
    pub reason: String,
}

/// Reply to `ping`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct PingReply {
    /// The component's id.
    pub component_id: String,
    /// Its process id.
    pub pid: u32,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Target;

    #[test]
    fn a_borrowed_task_event_is_written_as_the_owned_one() {
        let owned = TaskEvent {
            workflow_id: "w".into(),
            task_id: "t".into(),
            task_name: "T \"one\"".into(),
            method: "llm/generate".into(),
            status: TaskStatus::Completed,
            attempt: 1,
            result: Some(json!({ "response": "hi", "n": [1, 2.5] })),
            error: None,
            provider_id: Some("p-1".into()),
            endpoint: Some("p-1".into()),
            duration_seconds: Some(0.25),
            seq: None,
        };
        let result = owned
            .result
            .as_ref()
            .map(crate::records::JsonText::of_value);
        let borrowed = TaskEventRef {
            workflow_id: &owned.workflow_id,
            task_id: &owned.task_id,
            task_name: &owned.task_name,
            method: &owned.method,
            status: owned.status,
            attempt: owned.attempt,
            result: result.as_ref(),
            error: owned.error.as_ref(),
            provider_id: owned.provider_id.as_deref(),
            endpoint: owned.endpoint.as_deref(),
            duration_seconds: owned.duration_seconds,
        };
        assert_eq!(
            serde_json::to_string(&borrowed).expect("ref"),
            serde_json::to_string(&owned).expect("owned")
        );
    }

    #[test]
    fn a_batch_unpacks_into_its_events_in_order_and_other_envelopes_stay_whole() {
        let target = Target::Room("events,workflow:w".into());
        let entry = |seq: u64, event: &str| LoggedEvent {
            seq,
            event: event.into(),
            ts: 100 + seq,
            payload: json!({ "workflow_id": "w", "seq": seq }),
        };
        let batch = EventBatch {
            workflow_id: "w".into(),
            events: vec![
                entry(7, events::TASK_STARTED),
                entry(8, events::TASK_COMPLETED),
            ],
        };
        let mut env = Envelope::new(
            target.clone(),
            events::EVENT_BATCH,
            serde_json::to_value(&batch).expect("json"),
        );
        env.source = "qm-1".into();
        // Kept as text by the client (`events::READ_AS_TEXT`), it unpacks the same.
        let mut as_text = Envelope::with_text(
            target.clone(),
            events::EVENT_BATCH,
            crate::records::JsonText::of(&batch).expect("json"),
        );
        as_text.source = "qm-1".into();
        as_text.id = env.id.clone();
        as_text.ts = env.ts;
        assert_eq!(EventBatch::unpack(as_text), EventBatch::unpack(env.clone()));
        let out = EventBatch::unpack(env);
        let seen: Vec<(&str, u64, u64)> = out
            .iter()
            .map(|e| {
                (
                    e.event.as_str(),
                    e.ts,
                    e.payload["seq"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (events::TASK_STARTED, 107, 7),
                (events::TASK_COMPLETED, 108, 8)
            ]
        );
        assert!(out.iter().all(|e| e.source == "qm-1" && e.target == target));

        let single = Envelope::new(
            target.clone(),
            events::TASK_PROGRESS,
            json!({ "text": "x" }),
        );
        assert_eq!(EventBatch::unpack(single.clone()), vec![single]);
        let broken = Envelope::new(target, events::EVENT_BATCH, json!({ "events": 5 }));
        assert!(EventBatch::unpack(broken).is_empty());
    }
}
