//! The records a [`Store`](crate::Store) keeps: workflows, their tasks, and their statuses.
//!
//! They are defined in the protocol crate (`gleitzeit_protocol::records`), because they are
//! also what the queue-manager's replies carry; every backend stores and returns exactly
//! these fields.

pub use gleitzeit_protocol::records::{JsonText, StoreInfo, TaskRecord, WorkflowRecord};
pub use gleitzeit_protocol::status::{ParseStatusError, TaskStatus, WorkflowStatus};

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
