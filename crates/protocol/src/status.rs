//! Workflow and task statuses: the life-cycle states every service, the store and every
//! client share. On the wire they are the snake_case words of [`TaskStatus::as_str`] and
//! [`WorkflowStatus::as_str`].

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
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
