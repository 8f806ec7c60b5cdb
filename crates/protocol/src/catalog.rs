//! Every event of the wire protocol in one table: who sends it to whom, the type of its
//! payload, and the type of the data its reply carries. [`json_schema`] turns the table
//! into one JSON Schema document (`docs/schema/events.json`, for the Python SDK, dashboards
//! and clients in other languages); tests check that document and `docs/protocol.md`
//! against this table, so neither can drift from the types.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::accounts::{
    KeyCreate, KeyCreated, KeyInfo, KeyRevoke, ListedKey, User, UserCreate, WhoAmI,
};
use crate::envelope::{Envelope, Reply};
use crate::errors::GzError;
use crate::events as ev;
use crate::metrics::MetricsSnapshot;
use crate::payloads::{
    CancelTasks, ComponentInfo, ComponentLeft, ExecuteTasks, HeartbeatPayload, HeldTasks,
    HubStatus, LeaseTasks, LeasedTasks, ListWorkflows, RegisterPayload, RegisteredPayload,
    Resolution, RoomsWatched, SubmitWorkflow, SubscribePayload, SystemAlert, TaskLookup,
    TaskOutcomes, TasksFinished, WorkflowPlan, WorkflowRef,
};
use crate::records::{StoreInfo, TaskRecord, WorkflowRecord};
use crate::replies::{
    CancelReply, DeregisterReply, EventBatch, HeartbeatReply, OwnerReply, PingReply, Reason,
    RoomsReply, ShutdownReply, ShutdownRequest, SubmitReply, TaskEvent, TaskProgress,
    WorkflowDetail, WorkflowEventsReply, WorkflowFinished, WorkflowProgress,
};
use crate::requests::WorkflowEventsQuery;

/// Writes the schema of one type into a generator and returns a reference to it.
pub type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

fn of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// One event.
#[derive(Debug, Clone, Copy)]
pub struct EventSpec {
    /// Its name (the envelope's `event`).
    pub name: &'static str,
    /// Who sends it.
    pub from: &'static str,
    /// To whom (a target or a room).
    pub to: &'static str,
    /// Its payload; `None`: none (anything sent is ignored).
    pub payload: Option<SchemaOf>,
    /// The `ok` data of its reply; `None`: it is not answered with a `reply`.
    pub reply: Option<SchemaOf>,
}

const fn event(name: &'static str, from: &'static str, to: &'static str) -> EventSpec {
    EventSpec {
        name,
        from,
        to,
        payload: None,
        reply: None,
    }
}

impl EventSpec {
    const fn payload(mut self, of: SchemaOf) -> Self {
        self.payload = Some(of);
        self
    }

    const fn reply(mut self, of: SchemaOf) -> Self {
        self.reply = Some(of);
        self
    }
}

const HUB: &str = "hub";
const ANY: &str = "any client";
const COMPONENT: &str = "component";
const ADMIN: &str = "ADMIN";
const QM: &str = "queue-manager";
const RESOLVER: &str = "dependency-resolver";
const ENGINE: &str = "execution-engine";
const PROVIDER: &str = "provider";
const ROOMS: &str = "rooms events, workflow:<id>";

/// Every event, in the order of `docs/protocol.md` §5.
pub fn events() -> Vec<EventSpec> {
    vec![
        // 5.1 Hub events.
        event(ev::REGISTER, COMPONENT, HUB)
            .payload(of::<RegisterPayload>)
            .reply(of::<RegisteredPayload>),
        event(ev::HEARTBEAT, COMPONENT, HUB)
            .payload(of::<HeartbeatPayload>)
            .reply(of::<HeartbeatReply>),
        event(ev::DEREGISTER, COMPONENT, HUB).reply(of::<DeregisterReply>),
        event(ev::SUBSCRIBE, ANY, HUB)
            .payload(of::<SubscribePayload>)
            .reply(of::<RoomsReply>),
        event(ev::UNSUBSCRIBE, ANY, HUB)
            .payload(of::<SubscribePayload>)
            .reply(of::<RoomsReply>),
        event(ev::LIST_COMPONENTS, ANY, HUB).reply(of::<Vec<ComponentInfo>>),
        event(ev::HUB_STATUS, ANY, HUB).reply(of::<HubStatus>),
        event(ev::SHUTDOWN_REQUEST, "ADMIN, OPERATOR", HUB)
            .payload(of::<ShutdownRequest>)
            .reply(of::<ShutdownReply>),
        event(ev::AUTH_WHOAMI, ANY, HUB).reply(of::<WhoAmI>),
        event(ev::AUTH_USER_CREATE, ADMIN, HUB)
            .payload(of::<UserCreate>)
            .reply(of::<User>),
        event(ev::AUTH_USER_LIST, ADMIN, HUB).reply(of::<Vec<User>>),
        event(ev::AUTH_KEY_CREATE, ADMIN, HUB)
            .payload(of::<KeyCreate>)
            .reply(of::<KeyCreated>),
        event(ev::AUTH_KEY_LIST, ADMIN, HUB).reply(of::<Vec<ListedKey>>),
        event(ev::AUTH_KEY_REVOKE, ADMIN, HUB)
            .payload(of::<KeyRevoke>)
            .reply(of::<KeyInfo>),
        // 5.2 Events the hub emits.
        event(ev::REGISTERED, HUB, COMPONENT).payload(of::<RegisteredPayload>),
        event(ev::REPLY, "any", "the requester").payload(of::<Reply>),
        event(ev::ERROR, HUB, "the offending socket").payload(of::<GzError>),
        event(ev::COMPONENT_JOINED, HUB, "room components").payload(of::<ComponentInfo>),
        event(ev::COMPONENT_LEFT, HUB, "room components").payload(of::<ComponentLeft>),
        event(ev::COMPONENT_UNHEALTHY, HUB, "room components").payload(of::<ComponentInfo>),
        event(ev::SYSTEM_ALERT, "hub, queue-manager", "room components").payload(of::<SystemAlert>),
        event(ev::SHUTDOWN, HUB, COMPONENT).payload(of::<Reason>),
        event(ev::HUB_SHUTTING_DOWN, HUB, "every socket").payload(of::<Reason>),
        event(ev::METRICS, HUB, COMPONENT).reply(of::<MetricsSnapshot>),
        event(ev::ROOMS_WATCHED, HUB, "each queue-manager of the hub").payload(of::<RoomsWatched>),
        event(ev::PING, "any", COMPONENT).reply(of::<PingReply>),
        // 5.3 Queue-manager requests.
        event(ev::WORKFLOW_SUBMIT, ANY, QM)
            .payload(of::<SubmitWorkflow>)
            .reply(of::<SubmitReply>),
        event(ev::WORKFLOW_GET, ANY, QM)
            .payload(of::<WorkflowRef>)
            .reply(of::<WorkflowDetail>),
        event(ev::WORKFLOW_LIST, ANY, QM)
            .payload(of::<ListWorkflows>)
            .reply(of::<Vec<WorkflowRecord>>),
        event(ev::WORKFLOW_CANCEL, ANY, QM)
            .payload(of::<WorkflowRef>)
            .reply(of::<CancelReply>),
        event(ev::TASK_GET, ANY, QM)
            .payload(of::<TaskLookup>)
            .reply(of::<TaskRecord>),
        event(ev::WORKFLOW_EVENTS, ANY, QM)
            .payload(of::<WorkflowEventsQuery>)
            .reply(of::<WorkflowEventsReply>),
        event(ev::STORE_STATUS, ANY, QM).reply(of::<StoreInfo>),
        event(ev::WORKFLOW_OWNER, HUB, QM)
            .payload(of::<WorkflowRef>)
            .reply(of::<OwnerReply>),
        // 5.4 Scheduling.
        event(ev::LEASE_TASKS, ENGINE, QM)
            .payload(of::<LeaseTasks>)
            .reply(of::<LeasedTasks>),
        event(ev::WORKFLOW_PLAN, QM, RESOLVER)
            .payload(of::<WorkflowPlan>)
            .reply(of::<Resolution>),
        event(ev::TASKS_FINISHED, QM, RESOLVER)
            .payload(of::<TasksFinished>)
            .reply(of::<Resolution>),
        event(ev::WORKFLOW_FORGET, QM, RESOLVER).payload(of::<WorkflowRef>),
        event(
            ev::TASKS_HELD,
            "provider, execution-engine",
            "execution-engine, queue-manager",
        )
        .payload(of::<HeldTasks>),
        // 5.5 Execution.
        event(ev::EXECUTE_TASKS, ENGINE, PROVIDER).payload(of::<ExecuteTasks>),
        event(
            ev::TASK_OUTCOMES,
            "provider, execution-engine",
            "execution-engine, queue-manager",
        )
        .payload(of::<TaskOutcomes>)
        // Only when it carries the engine's next lease request (`TaskOutcomes::lease`).
        .reply(of::<LeasedTasks>),
        event(
            ev::CANCEL_TASKS,
            "queue-manager, execution-engine",
            "execution-engine, provider",
        )
        .payload(of::<CancelTasks>),
        // 5.6 Workflow and task events.
        event(ev::WORKFLOW_SUBMITTED, QM, ROOMS).payload(of::<WorkflowProgress>),
        event(ev::WORKFLOW_STARTED, QM, ROOMS).payload(of::<WorkflowProgress>),
        event(ev::WORKFLOW_PROGRESS, QM, ROOMS).payload(of::<WorkflowProgress>),
        event(ev::WORKFLOW_COMPLETED, QM, ROOMS).payload(of::<WorkflowFinished>),
        event(ev::WORKFLOW_FAILED, QM, ROOMS).payload(of::<WorkflowFinished>),
        event(ev::WORKFLOW_CANCELLED, QM, ROOMS).payload(of::<WorkflowFinished>),
        event(ev::TASK_QUEUED, QM, ROOMS).payload(of::<TaskEvent>),
        event(ev::TASK_STARTED, QM, ROOMS).payload(of::<TaskEvent>),
        event(ev::TASK_PROGRESS, PROVIDER, ROOMS).payload(of::<TaskProgress>),
        event(ev::TASK_COMPLETED, QM, ROOMS).payload(of::<TaskEvent>),
        event(ev::TASK_FAILED, QM, ROOMS).payload(of::<TaskEvent>),
        event(ev::TASK_RETRYING, QM, ROOMS).payload(of::<TaskEvent>),
        event(ev::TASK_SKIPPED, QM, ROOMS).payload(of::<TaskEvent>),
        event(ev::EVENT_BATCH, QM, ROOMS).payload(of::<EventBatch>),
    ]
}

/// The whole protocol as one JSON Schema (draft 2020-12) document: the envelope at the top,
/// `x-events` with each event's sender, receiver and the `$ref`s of its payload and reply
/// data, and every type under `$defs`.
pub fn json_schema() -> Value {
    let mut generator = SchemaGenerator::default();
    let envelope = generator.subschema_for::<Envelope>();
    let mut by_name = Map::new();
    for spec in events() {
        let mut entry = Map::new();
        entry.insert("from".into(), json!(spec.from));
        entry.insert("to".into(), json!(spec.to));
        if let Some(payload) = spec.payload {
            entry.insert("payload".into(), payload(&mut generator).to_value());
        }
        if let Some(reply) = spec.reply {
            entry.insert("reply".into(), reply(&mut generator).to_value());
        }
        by_name.insert(spec.name.into(), Value::Object(entry));
    }
    let defs: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://gleitzeit.invalid/schema/events.json",
        "title": "Gleitzeit wire protocol v1",
        "description": "An envelope (this schema); x-events gives, per event name, who sends it to whom, the schema of its payload and of the `ok` data of its reply. Generated from crates/protocol (gleitzeit_protocol::catalog).",
        "allOf": [envelope.to_value()],
        "x-events": by_name,
        "$defs": defs,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn all_event_constants() -> BTreeSet<&'static str> {
        // Every top-level `pub const …: &str` of `events` (rooms and component types sit in
        // indented modules), read from its source so a new event cannot be left out.
        include_str!("events.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("pub const "))
            .filter(|l| l.contains(": &str = \""))
            .filter_map(|l| l.split('"').nth(1))
            .collect()
    }

    #[test]
    fn the_catalogue_names_every_event_once() {
        let names: Vec<&str> = events().iter().map(|e| e.name).collect();
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "an event is listed twice");
        assert_eq!(unique, all_event_constants());
    }

    #[test]
    fn every_request_enum_event_is_in_the_catalogue() {
        use crate::requests::{
            EngineRequest, ProviderRequest, QueueManagerRequest, ResolverRequest,
        };
        let names: BTreeSet<&str> = events().iter().map(|e| e.name).collect();
        for list in [
            QueueManagerRequest::EVENTS,
            ResolverRequest::EVENTS,
            EngineRequest::EVENTS,
            ProviderRequest::EVENTS,
            ev::HUB_EVENTS,
        ] {
            for e in list {
                assert!(names.contains(e), "{e}");
            }
        }
    }

    #[test]
    fn every_reference_in_the_schema_resolves() {
        let doc = json_schema();
        let text = doc.to_string();
        let defs = doc["$defs"].as_object().expect("$defs");
        for piece in text.split("\"$ref\":\"#/$defs/").skip(1) {
            let name = piece.split('"').next().unwrap_or_default();
            assert!(defs.contains_key(name), "dangling $ref {name}");
        }
        assert!(defs.contains_key("TaskEvent"));
        assert_eq!(
            doc["x-events"]["workflow_submit"]["payload"]["$ref"],
            "#/$defs/SubmitWorkflow"
        );
    }
}
