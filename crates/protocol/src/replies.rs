//! Typed replies and events of the queue-manager: what clients (the CLI, the Python SDK,
//! dashboards) read back. Each serializes to the JSON documented in `docs/protocol.md`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::status::{TaskStatus, WorkflowStatus};

/// Reply to `workflow_submit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SubmitReply {
    /// The new workflow's id.
    pub workflow_id: String,
    /// How many tasks it has.
    pub total_tasks: usize,
}

/// Reply to `workflow_cancel`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CancelReply {
    /// Workflow id.
    pub workflow_id: String,
    /// False when it had finished already.
    pub cancelled: bool,
    /// Its status now.
    pub status: WorkflowStatus,
}

/// Reply to `workflow_events`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowEventsReply {
    /// Workflow id.
    pub workflow_id: String,
    /// `{seq, event, ts, payload}` objects after the asked sequence number, in order.
    pub events: Vec<Value>,
    /// False when older events than those were dropped (or are kept elsewhere).
    pub complete: bool,
}

/// Reply to `workflow_owner`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OwnerReply {
    /// Workflow id.
    pub workflow_id: String,
    /// The user who submitted it (none for workflows stored before identities existed, or
    /// unknown workflows).
    pub owner: Option<String>,
}

/// Payload of the `task_*` events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
}

/// Payload of `workflow_submitted`, `workflow_started`, `workflow_progress`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
}

/// Payload of `workflow_completed`, `workflow_failed`, `workflow_cancelled`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowFinished {
    /// Its final progress.
    #[serde(flatten)]
    pub progress: WorkflowProgress,
    /// Why it failed or was cancelled.
    pub error: Option<Value>,
    /// Results by task id (workflows of up to 1,000 tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_results: Option<Map<String, Value>>,
}
