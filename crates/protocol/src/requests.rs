//! What each service accepts, as one enum per service, decoded once from an envelope's
//! event name and payload. A service matches on its enum, so the compiler lists the events it
//! handles (a module doc cannot drift from the code), and a malformed payload is refused in
//! one place with GZ7020 (GZ7021 for an event the service does not handle).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::{ErrorCode, GzError};
use crate::events;
use crate::payloads::{
    HeldTasks, LeaseTasks, ListWorkflows, SubmitWorkflow, TaskLookup, TaskOutcomes, WorkflowRef,
};

/// Payload of `workflow_events`: a workflow's events after a sequence number.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkflowEventsQuery {
    /// Workflow id.
    pub workflow_id: String,
    /// The last sequence number the client saw (0: from the start).
    #[serde(default)]
    pub after_seq: u64,
}

/// The component a `component_left` (from the hub) is about.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComponentId {
    /// Component id.
    pub component_id: String,
}

/// Everything the queue-manager accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueManagerRequest {
    /// `workflow_submit`.
    Submit(SubmitWorkflow),
    /// `workflow_get`.
    Get(WorkflowRef),
    /// `workflow_list`.
    List(ListWorkflows),
    /// `workflow_cancel`.
    Cancel(WorkflowRef),
    /// `task_get`.
    TaskGet(TaskLookup),
    /// `workflow_events`.
    Events(WorkflowEventsQuery),
    /// `workflow_owner` (asked by the hub).
    Owner(WorkflowRef),
    /// `store_status`.
    StoreStatus,
    /// `lease_tasks` (engines).
    Lease(LeaseTasks),
    /// `task_outcomes` (engines).
    Outcomes(TaskOutcomes),
    /// `tasks_held` (engines).
    Held(HeldTasks),
    /// `component_left` (from the hub).
    ComponentLeft(ComponentId),
    /// `component_joined` or `component_unhealthy` (the `components` room): nothing to do.
    ComponentNews,
}

/// Reads a payload as `T`, or GZ7020 naming the event.
fn read<T: DeserializeOwned>(event: &str, payload: &Value) -> Result<T, GzError> {
    T::deserialize(payload).map_err(|e| invalid(event, e))
}

fn invalid(event: &str, e: serde_json::Error) -> GzError {
    GzError::new(
        ErrorCode::InvalidPayload,
        format!("invalid payload for event {event:?}: {e}"),
    )
}

impl QueueManagerRequest {
    /// The events the queue-manager handles.
    pub const EVENTS: &'static [&'static str] = &[
        events::WORKFLOW_SUBMIT,
        events::WORKFLOW_GET,
        events::WORKFLOW_LIST,
        events::WORKFLOW_CANCEL,
        events::TASK_GET,
        events::WORKFLOW_EVENTS,
        events::WORKFLOW_OWNER,
        events::STORE_STATUS,
        events::LEASE_TASKS,
        events::TASK_OUTCOMES,
        events::TASKS_HELD,
        events::COMPONENT_LEFT,
        events::COMPONENT_JOINED,
        events::COMPONENT_UNHEALTHY,
    ];

    /// Decodes an envelope's event and payload. A submission's payload is moved out (a
    /// workflow spec may be large: it is never copied); other payloads stay in place.
    ///
    /// # Errors
    ///
    /// GZ7021 for an event the queue-manager does not handle, GZ7020 for a malformed payload.
    pub fn decode(event: &str, payload: &mut Value) -> Result<Self, GzError> {
        Ok(match event {
            events::WORKFLOW_SUBMIT => Self::Submit(
                serde_json::from_value(std::mem::take(payload)).map_err(|e| invalid(event, e))?,
            ),
            events::WORKFLOW_GET => Self::Get(read(event, payload)?),
            events::WORKFLOW_LIST => Self::List(read(event, payload)?),
            events::WORKFLOW_CANCEL => Self::Cancel(read(event, payload)?),
            events::TASK_GET => Self::TaskGet(read(event, payload)?),
            events::WORKFLOW_EVENTS => Self::Events(read(event, payload)?),
            events::WORKFLOW_OWNER => Self::Owner(read(event, payload)?),
            events::STORE_STATUS => Self::StoreStatus,
            events::LEASE_TASKS => Self::Lease(read(event, payload)?),
            events::TASK_OUTCOMES => Self::Outcomes(read(event, payload)?),
            events::TASKS_HELD => Self::Held(read(event, payload)?),
            events::COMPONENT_LEFT => Self::ComponentLeft(read(event, payload)?),
            events::COMPONENT_JOINED | events::COMPONENT_UNHEALTHY => Self::ComponentNews,
            other => {
                return Err(GzError::new(
                    ErrorCode::UnknownEvent,
                    format!("queue-manager does not handle {other:?}"),
                ))
            }
        })
    }

    /// Whether the sender waits for a reply (requests), or not (reports and notices).
    pub fn expects_reply(event: &str) -> bool {
        !matches!(
            event,
            events::TASK_OUTCOMES
                | events::TASKS_HELD
                | events::COMPONENT_LEFT
                | events::COMPONENT_JOINED
                | events::COMPONENT_UNHEALTHY
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_handled_event_decodes_and_others_are_refused() {
        let mut p = json!({ "workflow_id": "w" });
        assert!(matches!(
            QueueManagerRequest::decode(events::WORKFLOW_GET, &mut p),
            Ok(QueueManagerRequest::Get(_))
        ));
        let mut p = json!({ "spec": { "name": "x", "tasks": [] } });
        assert!(matches!(
            QueueManagerRequest::decode(events::WORKFLOW_SUBMIT, &mut p),
            Ok(QueueManagerRequest::Submit(_))
        ));
        assert_eq!(p, Value::Null, "the spec was moved, not copied");
        let mut bad = json!({ "workflow_id": 5 });
        let err = QueueManagerRequest::decode(events::WORKFLOW_CANCEL, &mut bad).err();
        assert_eq!(err.map(|e| e.code), Some("GZ7020".to_string()));
        let err = QueueManagerRequest::decode("nope", &mut json!({})).err();
        assert_eq!(err.map(|e| e.code), Some("GZ7021".to_string()));
        for event in QueueManagerRequest::EVENTS {
            let refused = QueueManagerRequest::decode(event, &mut json!({}))
                .err()
                .map(|e| e.code);
            assert_ne!(refused, Some("GZ7021".to_string()), "{event} is handled");
        }
    }
}
