//! What each service accepts, as one enum per service, decoded once from an envelope's
//! event name and payload. A service matches on its enum, so the compiler lists the events it
//! handles (a module doc cannot drift from the code), and a malformed payload is refused in
//! one place with GZ7020 (GZ7021 for an event the service does not handle).

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::accounts::{KeyCreate, KeyRevoke, UserCreate};
use crate::errors::{ErrorCode, GzError};
use crate::events;
use crate::payloads::{
    CancelTasks, ComponentLeft, ExecuteTasks, HeartbeatPayload, HeldTasks, LeaseTasks,
    ListWorkflows, RegisterPayload, RoomsWatched, SubmitWorkflow, SubscribePayload, TaskLookup,
    TaskOutcomes, TasksFinished, WorkflowPlan, WorkflowRef,
};
use crate::replies::ShutdownRequest;
use crate::Envelope;

/// Payload of `workflow_events`: a workflow's events after a sequence number.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowEventsQuery {
    /// Workflow id.
    pub workflow_id: String,
    /// The last sequence number the client saw (0: from the start).
    #[serde(default)]
    pub after_seq: u64,
}

/// The component a `component_left` (from the hub) is about.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
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
    /// `rooms_watched` (from the hub).
    RoomsWatched(RoomsWatched),
}

/// Decodes an envelope whose payload may be kept as text ([`Envelope::raw`]): the one
/// event `kept` (whose payload is large) is read straight from the text into `wrap`'s
/// payload type; any other is handed to `decode` as text or as the parsed payload.
fn decode_kept<R, P: DeserializeOwned>(
    env: &mut Envelope,
    kept: &str,
    wrap: impl FnOnce(P) -> R,
    decode: impl FnOnce(&str, Payload<'_>) -> Result<R, GzError>,
) -> Result<R, GzError> {
    if env.event == kept {
        if let Some(raw) = env.raw.take() {
            return Ok(wrap(raw.parse().map_err(|e| invalid(kept, e))?));
        }
    }
    with_payload(env, decode)
}

/// Hands an envelope's event and payload to `decode`: the payload's text when it is kept as
/// text ([`Envelope::raw`]), the parsed payload otherwise.
fn with_payload<R>(env: &mut Envelope, decode: impl FnOnce(&str, Payload<'_>) -> R) -> R {
    match env.raw.take() {
        Some(raw) => decode(&env.event, Payload::Text(raw.text().unwrap_or("null"))),
        None => decode(&env.event, Payload::Value(&mut env.payload)),
    }
}

/// A payload to read into a request: parsed already, or JSON text (an event of
/// [`events::READ_AS_TEXT`], read straight into its type without a tree of values).
pub enum Payload<'a> {
    /// A parsed payload (a large one may be moved out of it).
    Value(&'a mut Value),
    /// A parsed payload, only borrowed.
    Ref(&'a Value),
    /// The payload's JSON text.
    Text(&'a str),
}

impl Payload<'_> {
    /// Reads the payload as `T`, or GZ7020 naming the event.
    fn read<T: DeserializeOwned>(&self, event: &str) -> Result<T, GzError> {
        match self {
            Payload::Value(v) => T::deserialize(&**v),
            Payload::Ref(v) => T::deserialize(*v),
            Payload::Text(t) => serde_json::from_str(t),
        }
        .map_err(|e| invalid(event, e))
    }

    /// Reads a large payload as `T`, moving it out of a parsed payload instead of copying.
    fn take<T: DeserializeOwned>(self, event: &str) -> Result<T, GzError> {
        match self {
            Payload::Value(v) => serde_json::from_value(std::mem::take(v)),
            Payload::Ref(v) => T::deserialize(v),
            Payload::Text(t) => serde_json::from_str(t),
        }
        .map_err(|e| invalid(event, e))
    }
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
        events::ROOMS_WATCHED,
    ];

    /// Decodes an envelope's event and payload; a submission kept as text
    /// ([`Envelope::raw`]) is read straight from it.
    ///
    /// # Errors
    ///
    /// GZ7021 for an event the queue-manager does not handle, GZ7020 for a malformed payload.
    pub fn decode_envelope(env: &mut Envelope) -> Result<Self, GzError> {
        decode_kept(
            env,
            events::WORKFLOW_SUBMIT,
            Self::Submit,
            Self::decode_payload,
        )
    }

    /// [`QueueManagerRequest::decode_envelope`] for a payload already parsed (a
    /// submission's payload is moved out: a workflow spec may be large, it is never copied).
    ///
    /// # Errors
    ///
    /// As [`QueueManagerRequest::decode_envelope`].
    pub fn decode(event: &str, payload: &mut Value) -> Result<Self, GzError> {
        Self::decode_payload(event, Payload::Value(payload))
    }

    /// [`QueueManagerRequest::decode`] for a payload parsed or kept as text.
    ///
    /// # Errors
    ///
    /// As [`QueueManagerRequest::decode_envelope`].
    pub fn decode_payload(event: &str, payload: Payload<'_>) -> Result<Self, GzError> {
        Ok(match event {
            events::WORKFLOW_SUBMIT => Self::Submit(payload.take(event)?),
            events::WORKFLOW_GET => Self::Get(payload.read(event)?),
            events::WORKFLOW_LIST => Self::List(payload.read(event)?),
            events::WORKFLOW_CANCEL => Self::Cancel(payload.read(event)?),
            events::TASK_GET => Self::TaskGet(payload.read(event)?),
            events::WORKFLOW_EVENTS => Self::Events(payload.read(event)?),
            events::WORKFLOW_OWNER => Self::Owner(payload.read(event)?),
            events::STORE_STATUS => Self::StoreStatus,
            events::LEASE_TASKS => Self::Lease(payload.read(event)?),
            events::TASK_OUTCOMES => Self::Outcomes(payload.read(event)?),
            events::TASKS_HELD => Self::Held(payload.read(event)?),
            events::COMPONENT_LEFT => Self::ComponentLeft(payload.read(event)?),
            events::COMPONENT_JOINED | events::COMPONENT_UNHEALTHY => Self::ComponentNews,
            events::ROOMS_WATCHED => Self::RoomsWatched(payload.read(event)?),
            other => return Err(unknown("queue-manager", other)),
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
                | events::ROOMS_WATCHED
        )
    }
}

fn unknown(service: &str, event: &str) -> GzError {
    GzError::new(
        ErrorCode::UnknownEvent,
        format!("{service} does not handle {event:?}"),
    )
}

/// Everything the dependency-resolver accepts (from queue-managers).
#[derive(Debug, Clone, PartialEq)]
pub enum ResolverRequest {
    /// `workflow_plan`: plan (or plan again) a workflow.
    Plan(WorkflowPlan),
    /// `tasks_finished`: tasks of a planned workflow finished.
    Finished(TasksFinished),
    /// `workflow_forget`: drop a finished workflow's plan (no reply).
    Forget(WorkflowRef),
}

impl ResolverRequest {
    /// The events the dependency-resolver handles.
    pub const EVENTS: &'static [&'static str] = &[
        events::WORKFLOW_PLAN,
        events::TASKS_FINISHED,
        events::WORKFLOW_FORGET,
    ];

    /// Decodes an envelope's event and payload; a plan kept as text
    /// ([`Envelope::raw`]) is read straight from it.
    ///
    /// # Errors
    ///
    /// GZ7021 for an event the resolver does not handle, GZ7020 for a malformed payload.
    pub fn decode_envelope(env: &mut Envelope) -> Result<Self, GzError> {
        decode_kept(env, events::WORKFLOW_PLAN, Self::Plan, Self::decode_payload)
    }

    /// [`ResolverRequest::decode_envelope`] for a payload already parsed (a plan's spec is
    /// moved out, not copied).
    ///
    /// # Errors
    ///
    /// As [`ResolverRequest::decode_envelope`].
    pub fn decode(event: &str, payload: &mut Value) -> Result<Self, GzError> {
        Self::decode_payload(event, Payload::Value(payload))
    }

    fn decode_payload(event: &str, payload: Payload<'_>) -> Result<Self, GzError> {
        Ok(match event {
            events::WORKFLOW_PLAN => Self::Plan(payload.take(event)?),
            events::TASKS_FINISHED => Self::Finished(payload.read(event)?),
            events::WORKFLOW_FORGET => Self::Forget(payload.read(event)?),
            other => return Err(unknown("dependency-resolver", other)),
        })
    }
}

/// Everything the execution-engine accepts: reports of its providers and the hub's news of
/// components.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineRequest {
    /// `task_outcomes` from a provider.
    Outcomes(TaskOutcomes),
    /// `tasks_held` from a provider.
    Held(HeldTasks),
    /// `cancel_tasks` from a queue-manager: stop these tasks where they run.
    Cancel(CancelTasks),
    /// `component_joined` (room `components`): providers may have come.
    ComponentJoined,
    /// `component_left` (room `components`): who left. Only the hub may say so.
    ComponentLeft(ComponentLeft),
    /// `component_unhealthy`, or a stray `reply`: nothing to do.
    Ignored,
}

impl EngineRequest {
    /// The events the execution-engine handles.
    pub const EVENTS: &'static [&'static str] = &[
        events::TASK_OUTCOMES,
        events::TASKS_HELD,
        events::CANCEL_TASKS,
        events::COMPONENT_JOINED,
        events::COMPONENT_LEFT,
        events::COMPONENT_UNHEALTHY,
        events::REPLY,
    ];

    /// Decodes an envelope; a payload kept as text ([`Envelope::raw`]) is read straight
    /// from it.
    ///
    /// # Errors
    ///
    /// GZ7021 for an event the engine does not handle, GZ7020 for a malformed payload.
    pub fn decode_envelope(env: &mut Envelope) -> Result<Self, GzError> {
        with_payload(env, Self::decode_payload)
    }

    /// Decodes an envelope's event and parsed payload.
    ///
    /// # Errors
    ///
    /// As [`EngineRequest::decode_envelope`].
    pub fn decode(event: &str, payload: &Value) -> Result<Self, GzError> {
        Self::decode_payload(event, Payload::Ref(payload))
    }

    fn decode_payload(event: &str, payload: Payload<'_>) -> Result<Self, GzError> {
        Ok(match event {
            events::TASK_OUTCOMES => Self::Outcomes(payload.read(event)?),
            events::TASKS_HELD => Self::Held(payload.read(event)?),
            events::CANCEL_TASKS => Self::Cancel(payload.read(event)?),
            events::COMPONENT_JOINED => Self::ComponentJoined,
            events::COMPONENT_LEFT => Self::ComponentLeft(payload.read(event)?),
            events::COMPONENT_UNHEALTHY | events::REPLY => Self::Ignored,
            other => return Err(unknown("execution-engine", other)),
        })
    }
}

/// Everything a provider accepts (from execution-engines), besides `ping` and `shutdown`
/// which every component answers.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderRequest {
    /// `execute_tasks`: run these tasks.
    Execute(ExecuteTasks),
    /// `cancel_tasks`: stop these tasks if they run.
    Cancel(CancelTasks),
}

impl ProviderRequest {
    /// The events a provider handles.
    pub const EVENTS: &'static [&'static str] = &[events::EXECUTE_TASKS, events::CANCEL_TASKS];

    /// Decodes an envelope's event and payload (a batch of tasks is moved out, not copied).
    ///
    /// # Errors
    ///
    /// GZ7021 for an event providers do not handle, GZ7020 for a malformed payload.
    pub fn decode(service: &str, event: &str, payload: &mut Value) -> Result<Self, GzError> {
        Self::decode_payload(service, event, Payload::Value(payload))
    }

    /// Decodes an envelope; a payload kept as text ([`Envelope::raw`]: a batch of tasks) is
    /// read straight from it.
    ///
    /// # Errors
    ///
    /// As [`ProviderRequest::decode`].
    pub fn decode_envelope(service: &str, env: &mut Envelope) -> Result<Self, GzError> {
        with_payload(env, |event, payload| {
            Self::decode_payload(service, event, payload)
        })
    }

    fn decode_payload(service: &str, event: &str, payload: Payload<'_>) -> Result<Self, GzError> {
        Ok(match event {
            events::EXECUTE_TASKS => Self::Execute(payload.take(event)?),
            events::CANCEL_TASKS => Self::Cancel(payload.read(event)?),
            other => return Err(unknown(service, other)),
        })
    }
}

/// Everything the hub answers itself (envelopes with target `hub`).
#[derive(Debug, Clone, PartialEq)]
pub enum HubRequest {
    /// `register`.
    Register(RegisterPayload),
    /// `heartbeat`.
    Heartbeat(HeartbeatPayload),
    /// `deregister` (payload ignored).
    Deregister,
    /// `subscribe`.
    Subscribe(SubscribePayload),
    /// `unsubscribe`.
    Unsubscribe(SubscribePayload),
    /// `list_components` (payload ignored).
    ListComponents,
    /// `hub_status` (payload ignored).
    HubStatus,
    /// `shutdown_request` (a payload other than `{"scope": "all"}` stops the hub alone).
    Shutdown(ShutdownRequest),
    /// The identity events.
    Admin(AdminRequest),
}

/// The identity events (`auth_*`), answered by the hub from its key store.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminRequest {
    /// `auth_whoami` (anyone).
    WhoAmI,
    /// `auth_user_create` (ADMIN).
    UserCreate(UserCreate),
    /// `auth_user_list` (ADMIN).
    UserList,
    /// `auth_key_create` (ADMIN).
    KeyCreate(KeyCreate),
    /// `auth_key_list` (ADMIN).
    KeyList,
    /// `auth_key_revoke` (ADMIN).
    KeyRevoke(KeyRevoke),
}

impl AdminRequest {
    /// The identity events.
    pub const EVENTS: &'static [&'static str] = &[
        events::AUTH_WHOAMI,
        events::AUTH_USER_CREATE,
        events::AUTH_USER_LIST,
        events::AUTH_KEY_CREATE,
        events::AUTH_KEY_LIST,
        events::AUTH_KEY_REVOKE,
    ];
}

impl HubRequest {
    /// Decodes an envelope addressed to the hub. `register`, `heartbeat`, `subscribe` and
    /// `unsubscribe` need an object payload (`{}` at least).
    ///
    /// # Errors
    ///
    /// GZ7021 (with the list of hub events as hint) for an event the hub does not handle,
    /// GZ7020 for a malformed payload.
    pub fn decode(event: &str, payload: &Value) -> Result<Self, GzError> {
        Ok(match event {
            events::REGISTER => Self::Register(read(event, payload)?),
            events::HEARTBEAT => Self::Heartbeat(read(event, payload)?),
            events::DEREGISTER => Self::Deregister,
            events::SUBSCRIBE => Self::Subscribe(read(event, payload)?),
            events::UNSUBSCRIBE => Self::Unsubscribe(read(event, payload)?),
            events::LIST_COMPONENTS => Self::ListComponents,
            events::HUB_STATUS => Self::HubStatus,
            events::SHUTDOWN_REQUEST => {
                Self::Shutdown(ShutdownRequest::deserialize(payload).unwrap_or_default())
            }
            events::AUTH_WHOAMI => Self::Admin(AdminRequest::WhoAmI),
            events::AUTH_USER_CREATE => {
                Self::Admin(AdminRequest::UserCreate(read(event, payload)?))
            }
            events::AUTH_USER_LIST => Self::Admin(AdminRequest::UserList),
            events::AUTH_KEY_CREATE => Self::Admin(AdminRequest::KeyCreate(read(event, payload)?)),
            events::AUTH_KEY_LIST => Self::Admin(AdminRequest::KeyList),
            events::AUTH_KEY_REVOKE => Self::Admin(AdminRequest::KeyRevoke(read(event, payload)?)),
            other => {
                return Err(GzError::new(
                    ErrorCode::UnknownEvent,
                    format!("the hub does not handle event {other:?}"),
                )
                .with_hint(format!("hub events are: {}", events::HUB_EVENTS.join(", "))))
            }
        })
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

    #[test]
    fn every_service_decodes_its_events_and_refuses_the_others() {
        let handled = |decode: &dyn Fn(&str, &mut Value) -> Option<String>, events: &[&str]| {
            for event in events {
                assert_ne!(
                    decode(event, &mut json!({})),
                    Some("GZ7021".into()),
                    "{event}"
                );
            }
            assert_eq!(decode("nope", &mut json!({})), Some("GZ7021".into()));
        };
        handled(
            &|e, p| ResolverRequest::decode(e, p).err().map(|e| e.code),
            ResolverRequest::EVENTS,
        );
        handled(
            &|e, p| EngineRequest::decode(e, p).err().map(|e| e.code),
            EngineRequest::EVENTS,
        );
        handled(
            &|e, p| ProviderRequest::decode("p", e, p).err().map(|e| e.code),
            ProviderRequest::EVENTS,
        );
        handled(
            &|e, p| HubRequest::decode(e, p).err().map(|e| e.code),
            events::HUB_EVENTS,
        );
        for e in AdminRequest::EVENTS {
            assert!(events::HUB_EVENTS.contains(e), "{e}");
        }
        assert_eq!(
            HubRequest::decode(events::HEARTBEAT, &Value::Null)
                .err()
                .map(|e| e.code),
            Some("GZ7020".to_string()),
            "heartbeat needs an object"
        );
        assert_eq!(
            HubRequest::decode(events::SHUTDOWN_REQUEST, &json!("anything")).ok(),
            Some(HubRequest::Shutdown(ShutdownRequest::default()))
        );
        let left = json!({"component_id": "x", "component_type": "queue-manager", "reason": "disconnected"});
        assert!(matches!(
            EngineRequest::decode(events::COMPONENT_LEFT, &left),
            Ok(EngineRequest::ComponentLeft(ComponentLeft { .. }))
        ));
        let mut bad = json!({"tasks": 3});
        let err = ProviderRequest::decode("p", events::EXECUTE_TASKS, &mut bad).err();
        assert_eq!(err.map(|e| e.code), Some("GZ7020".to_string()));
    }
}
