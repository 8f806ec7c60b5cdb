//! The records a [`Store`](crate::Store) keeps: workflows, their tasks, and their statuses.
//!
//! These types are backend-neutral plain data; every backend stores and returns exactly
//! these fields. Times are milliseconds since the Unix epoch.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A status string that names no known status (see [`WorkflowStatus::from_str`] and
/// [`TaskStatus::from_str`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} status `{value}`")]
pub struct ParseStatusError {
    /// `"workflow"` or `"task"`.
    pub kind: &'static str,
    /// The text that did not parse.
    pub value: String,
}

/// The life-cycle state of a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Accepted and stored, not started yet.
    Pending,
    /// At least one task has been scheduled.
    Running,
    /// Every task finished (completed or skipped by policy) without failing the workflow.
    Completed,
    /// The workflow failed; see [`WorkflowRecord::error`].
    Failed,
    /// Cancelled by a user or by shutdown.
    Cancelled,
}

impl WorkflowStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [WorkflowStatus; 5] = [
        WorkflowStatus::Pending,
        WorkflowStatus::Running,
        WorkflowStatus::Completed,
        WorkflowStatus::Failed,
        WorkflowStatus::Cancelled,
    ];

    /// Whether the workflow has reached a final state (completed, failed or cancelled).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled
        )
    }

    /// The snake_case name, identical to the serde representation (e.g. `"running"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            WorkflowStatus::Pending => "pending",
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkflowStatus {
    type Err = ParseStatusError;

    /// Parses the snake_case name produced by [`WorkflowStatus::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkflowStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseStatusError {
                kind: "workflow",
                value: s.to_string(),
            })
    }
}

/// The life-cycle state of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting for its dependencies.
    Pending,
    /// Ready and queued for a provider.
    Queued,
    /// Sent to a provider, not finished yet.
    Running,
    /// Failed an attempt and waits for the next one.
    Retrying,
    /// Finished with a result.
    Completed,
    /// Failed for good; see [`TaskRecord::error`].
    Failed,
    /// Not run because a dependency failed.
    Skipped,
    /// Cancelled with its workflow.
    Cancelled,
}

impl TaskStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [TaskStatus; 8] = [
        TaskStatus::Pending,
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Retrying,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Skipped,
        TaskStatus::Cancelled,
    ];

    /// Whether the task has reached a final state (completed, failed, skipped or cancelled).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskStatus::Completed
                | TaskStatus::Failed
                | TaskStatus::Skipped
                | TaskStatus::Cancelled
        )
    }

    /// The snake_case name, identical to the serde representation (e.g. `"retrying"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Retrying => "retrying",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskStatus {
    type Err = ParseStatusError;

    /// Parses the snake_case name produced by [`TaskStatus::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| ParseStatusError {
                kind: "task",
                value: s.to_string(),
            })
    }
}

/// One stored workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// Unique workflow id.
    pub id: String,
    /// Human-readable name from the spec.
    pub name: String,
    /// Current status.
    pub status: WorkflowStatus,
    /// The validated workflow spec as JSON (can be megabytes for 100,000 tasks).
    ///
    /// [`Store::list_workflows`](crate::Store::list_workflows) returns `Value::Null` here;
    /// [`Store::apply`](crate::Store::apply) keeps the stored spec when given `Value::Null`.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

/// What a store is and whether it answers, for status pages and health checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreInfo {
    /// Backend kind, e.g. `"sqlite"`.
    pub kind: String,
    /// Where the data lives: a file path, `":memory:"`, or a server address.
    pub location: String,
    /// Whether a trivial query succeeded just now.
    pub healthy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workflow_status_names_round_trip_and_match_serde() {
        for status in WorkflowStatus::ALL {
            assert_eq!(status.as_str().parse::<WorkflowStatus>(), Ok(status));
            assert_eq!(status.to_string(), status.as_str());
            let json = serde_json::to_value(status).expect("serialize");
            assert_eq!(json, serde_json::Value::String(status.as_str().into()));
        }
        let err = "done".parse::<WorkflowStatus>().expect_err("unknown");
        assert_eq!(err.to_string(), "unknown workflow status `done`");
    }

    #[test]
    fn task_status_names_round_trip_and_match_serde() {
        for status in TaskStatus::ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
            let json = serde_json::to_value(status).expect("serialize");
            assert_eq!(json, serde_json::Value::String(status.as_str().into()));
        }
        assert!("Running".parse::<TaskStatus>().is_err());
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = WorkflowStatus::ALL
            .into_iter()
            .filter(WorkflowStatus::is_terminal)
            .collect();
        assert_eq!(
            terminal,
            [
                WorkflowStatus::Completed,
                WorkflowStatus::Failed,
                WorkflowStatus::Cancelled
            ]
        );
        let terminal: Vec<_> = TaskStatus::ALL
            .into_iter()
            .filter(TaskStatus::is_terminal)
            .collect();
        assert_eq!(
            terminal,
            [
                TaskStatus::Completed,
                TaskStatus::Failed,
                TaskStatus::Skipped,
                TaskStatus::Cancelled
            ]
        );
    }
}
