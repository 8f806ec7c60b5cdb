//! The records of workflows and tasks as the store keeps them and the queue-manager's
//! replies carry them (`workflow_get`, `workflow_list`, `task_get`). Times are milliseconds
//! since the Unix epoch.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::{TaskStatus, WorkflowStatus};

/// One stored workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowRecord {
    /// Unique workflow id.
    pub id: String,
    /// Human-readable name from the spec.
    pub name: String,
    /// Current status.
    pub status: WorkflowStatus,
    /// The validated workflow spec as JSON (can be megabytes for 100,000 tasks).
    ///
    /// `Store::list_workflows` returns `Value::Null` here;
    /// `Store::apply` keeps the stored spec when given `Value::Null`.
    pub spec: serde_json::Value,
    /// Directory that relative paths in the spec are resolved against.
    pub base_dir: Option<String>,
    /// Number of tasks in the workflow.
    pub total_tasks: u64,
    /// When the workflow was submitted (ms since epoch).
    pub created_at: u64,
    /// When its first task was scheduled (ms since epoch).
    pub started_at: Option<u64>,
    /// When it reached a terminal status (ms since epoch).
    pub finished_at: Option<u64>,
    /// Why it failed, as a structured error.
    pub error: Option<serde_json::Value>,
    /// The user who submitted it (as the hub authenticated them); `None` for workflows
    /// stored before identities existed.
    #[serde(default)]
    pub owner: Option<String>,
}

/// One stored task of a workflow, identified by `(workflow_id, task_id)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRecord {
    /// The workflow the task belongs to.
    pub workflow_id: String,
    /// Task id, unique within its workflow.
    pub task_id: String,
    /// Human-readable name.
    pub name: String,
    /// Method to call, e.g. `llm/generate`.
    pub method: String,
    /// Current status.
    pub status: TaskStatus,
    /// Scheduling priority (higher runs first).
    pub priority: i32,
    /// Attempts made so far.
    pub attempts: u32,
    /// Parameters after `${...}` substitution, once resolved.
    pub params: Option<serde_json::Value>,
    /// The provider's result, once completed.
    pub result: Option<serde_json::Value>,
    /// The last error, if any attempt failed.
    pub error: Option<serde_json::Value>,
    /// The provider that ran (or runs) the task.
    pub provider_id: Option<String>,
    /// When it was queued (ms since epoch).
    pub queued_at: Option<u64>,
    /// When its current or last attempt started (ms since epoch).
    pub started_at: Option<u64>,
    /// When it reached a terminal status (ms since epoch).
    pub finished_at: Option<u64>,
}

impl TaskRecord {
    /// The key this task is queued and leased by (`crate::routing::route_key`).
    pub fn route(&self) -> std::borrow::Cow<'_, str> {
        crate::routing::route_key(
            &self.method,
            self.params.as_ref().unwrap_or(&serde_json::Value::Null),
        )
    }

    /// A new task as a submission creates it: pending, never attempted.
    pub fn pending(
        workflow_id: impl Into<String>,
        task_id: impl Into<String>,
        name: impl Into<String>,
        method: impl Into<String>,
        priority: i32,
    ) -> Self {
        TaskRecord {
            workflow_id: workflow_id.into(),
            task_id: task_id.into(),
            name: name.into(),
            method: method.into(),
            status: TaskStatus::Pending,
            priority,
            attempts: 0,
            params: None,
            result: None,
            error: None,
            provider_id: None,
            queued_at: None,
            started_at: None,
            finished_at: None,
        }
    }
}

/// What a store is and whether it answers, for status pages and health checks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StoreInfo {
    /// Backend kind, e.g. `"sqlite"`.
    pub kind: String,
    /// Where the data lives: a file path, `":memory:"`, or a server address.
    pub location: String,
    /// Whether a trivial query succeeded just now.
    pub healthy: bool,
}
