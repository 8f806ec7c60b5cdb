//! Event names. Every event Gleitzeit sends or accepts is spelled here once.
//!
//! Hub events (target `hub`) are handled by the hub itself; component events are routed to
//! components; client-facing events are broadcast to rooms ([`rooms`]).

/// A reply to a request; `correlation_id` is the request's id; payload is a `Reply`.
pub const REPLY: &str = "reply";
/// Hub → sender: an envelope that could not be accepted (malformed, unknown event, no route).
/// Payload is a `GzError`; `correlation_id` is the offending message's id when known.
pub const ERROR: &str = "gz_error";

// ---- Lifecycle (target: hub) ----

/// Component → hub: join the registry. Payload: `RegisterPayload`. Answered by [`REGISTERED`].
pub const REGISTER: &str = "register";
/// Hub → component: registration accepted. Payload: `RegisteredPayload`.
pub const REGISTERED: &str = "registered";
/// Component → hub: still alive, with current load. Payload: `HeartbeatPayload`.
pub const HEARTBEAT: &str = "heartbeat";
/// Component → hub: leaving on purpose (graceful shutdown). No payload.
pub const DEREGISTER: &str = "deregister";
/// Any client → hub: join rooms. Payload: `SubscribePayload`. Answered by a reply.
pub const SUBSCRIBE: &str = "subscribe";
/// Any client → hub: leave rooms. Payload: `SubscribePayload`.
pub const UNSUBSCRIBE: &str = "unsubscribe";
/// Any client → hub: the component table. Answered by a reply with `Vec<ComponentInfo>`.
pub const LIST_COMPONENTS: &str = "list_components";
/// Any client → hub: hub health and counters. Answered by a reply with `HubStatus`.
pub const HUB_STATUS: &str = "hub_status";
/// Client → hub: ask the hub to shut down (used by `gz stop`). Answered by a reply.
pub const SHUTDOWN_REQUEST: &str = "shutdown_request";

/// Anyone → a component: are you there? Every component answers with a reply
/// `{component_id, pid}`. Useful for diagnostics and routing tests.
pub const PING: &str = "ping";

// ---- Lifecycle (hub → rooms / components) ----

/// Hub → room `components`: a component registered. Payload: `ComponentInfo`.
pub const COMPONENT_JOINED: &str = "component_joined";
/// Hub → room `components`: a component disconnected, deregistered or missed its
/// heartbeats. Payload: `ComponentLeft`.
pub const COMPONENT_LEFT: &str = "component_left";
/// Hub → room `components`: a component missed heartbeats and is no longer routed to.
/// Payload: `ComponentInfo`.
pub const COMPONENT_UNHEALTHY: &str = "component_unhealthy";
/// Something needs a person's attention: a component lost, an LLM endpoint cooling down or
/// down, tasks backing up with no provider (to the room `components`).
pub const SYSTEM_ALERT: &str = "system_alert";
/// Hub → every socket: the hub is shutting down. Payload: `{ "reason": string }`.
pub const HUB_SHUTTING_DOWN: &str = "hub_shutting_down";
/// Hub → a component: please shut down. Payload: `{ "reason": string }`.
pub const SHUTDOWN: &str = "shutdown";
/// Hub → a component of this hub: your metrics, for the hub's `GET /metrics`. Payload `{}`;
/// every component answers with a reply carrying a `MetricsSnapshot`. Only the hub sends it.
pub const METRICS: &str = "metrics";
/// Hub → each queue-manager connected to it: which event rooms have watchers anywhere in the
/// mesh (`events` and `workflow:<id>` rooms only). Sent in full (`reset: true`) when a
/// queue-manager registers, then as changes. A queue-manager sends a workflow's task events
/// only while `events` or its `workflow:<id>` room is watched; workflow events always go
/// out. Payload: `RoomsWatched`. Only the hub sends it.
pub const ROOMS_WATCHED: &str = "rooms_watched";

// ---- Client-facing workflow and task events (rooms `events` and `workflow:<id>`) ----

/// A workflow was accepted and persisted.
pub const WORKFLOW_SUBMITTED: &str = "workflow_submitted";
/// A workflow's first tasks were queued.
pub const WORKFLOW_STARTED: &str = "workflow_started";
/// Progress: `{completed_tasks, failed_tasks, skipped_tasks, total_tasks}`.
pub const WORKFLOW_PROGRESS: &str = "workflow_progress";
/// Every task finished successfully.
pub const WORKFLOW_COMPLETED: &str = "workflow_completed";
/// The workflow failed (a task failed for good, or a timeout).
pub const WORKFLOW_FAILED: &str = "workflow_failed";
/// The workflow was cancelled.
pub const WORKFLOW_CANCELLED: &str = "workflow_cancelled";
/// A task became ready and was queued.
pub const TASK_QUEUED: &str = "task_queued";
/// A task was handed to a provider.
pub const TASK_STARTED: &str = "task_started";
/// Partial output of a running task (e.g. streamed LLM tokens).
pub const TASK_PROGRESS: &str = "task_progress";
/// A task finished with a result.
pub const TASK_COMPLETED: &str = "task_completed";
/// A task failed for good.
pub const TASK_FAILED: &str = "task_failed";
/// A task attempt failed and will be retried after a delay.
pub const TASK_RETRYING: &str = "task_retrying";
/// A task will not run because a dependency failed or the workflow was cancelled.
pub const TASK_SKIPPED: &str = "task_skipped";

/// Whether `event` is a task event (`task_*`): sent to a workflow's rooms only while
/// someone watches them, never to its `summary:<id>` room.
pub fn is_task_event(event: &str) -> bool {
    event.starts_with("task_")
}

/// Queue-manager → rooms `events` and `workflow:<id>`: the workflow and task events above of
/// one workflow, published together (those made while it worked through the messages
/// waiting for it; a lone event is a batch of one). Payload: `EventBatch` `{workflow_id, events: [{seq, event, ts, payload}]}`.
pub const EVENT_BATCH: &str = "event_batch";

// ---- Task execution (engine ↔ providers) ----

/// Engine → provider: run a batch of tasks. Payload: `ExecuteTasks`.
pub const EXECUTE_TASKS: &str = "execute_tasks";
/// Provider → engine (and engine → queue-manager): finished attempts. Payload: `TaskOutcomes`.
pub const TASK_OUTCOMES: &str = "task_outcomes";
/// Engine → provider: stop these tasks. Payload: `CancelTasks`.
pub const CANCEL_TASKS: &str = "cancel_tasks";

// ---- Workflows (clients → queue-manager) ----

/// Client → queue-manager: submit a workflow. Payload: `SubmitWorkflow`.
pub const WORKFLOW_SUBMIT: &str = "workflow_submit";
/// Client → queue-manager: a workflow with every task. Payload: `WorkflowRef`.
pub const WORKFLOW_GET: &str = "workflow_get";
/// Client → queue-manager: recent workflows. Payload: `ListWorkflows`.
pub const WORKFLOW_LIST: &str = "workflow_list";
/// Client → queue-manager: cancel a workflow (running work is stopped). Payload: `WorkflowRef`.
pub const WORKFLOW_CANCEL: &str = "workflow_cancel";
/// Client → queue-manager: one task. Payload: `TaskLookup`.
pub const TASK_GET: &str = "task_get";
/// Client → queue-manager: a workflow's events after a sequence number (catch-up after a
/// reconnect). Payload: `{workflow_id, after_seq}`. Reply: `{workflow_id, events: [{seq,
/// event, ts, payload}], complete}` where `complete` is false when older events were
/// already dropped from the queue-manager's buffer.
pub const WORKFLOW_EVENTS: &str = "workflow_events";
/// Client → queue-manager: the store in use and its health.
pub const STORE_STATUS: &str = "store_status";

// ---- Scheduling (queue-manager ↔ resolver, engine) ----

/// Engine → queue-manager: give me ready tasks for these free slots. Payload: `LeaseTasks`.
pub const LEASE_TASKS: &str = "lease_tasks";
/// Queue-manager → resolver: plan (or re-plan) a workflow. Payload: `WorkflowPlan`.
pub const WORKFLOW_PLAN: &str = "workflow_plan";

/// Events whose large payloads a client library keeps as JSON text for the receiver
/// ([`crate::Envelope::raw`]): a 100,000-task spec parsed into a tree of values took
/// ~3 KB per task before the receiver turned it into its own types.
pub const KEPT_AS_TEXT: &[&str] = &[WORKFLOW_SUBMIT, WORKFLOW_PLAN];

/// Events whose payload, when it comes in parts, a client library hands on as its pieces
/// ([`crate::Envelope::pieces`]) instead of joining them: their receiver reads the payload
/// as it goes and lets each piece go once read, so it never holds the whole text beside
/// what it makes of it (the resolver, a plan).
pub const READ_IN_PIECES: &[&str] = &[WORKFLOW_PLAN];

/// Events whose payloads a client library keeps as JSON text at any size, because their
/// receivers read them straight into their own types ([`crate::Envelope::raw`]): the
/// busiest messages of the task path. Parsing them into a tree of values first, then into
/// the receiver's types, was a sixth of the queue-manager's CPU under load.
pub const READ_AS_TEXT: &[&str] = &[
    TASK_OUTCOMES,
    LEASE_TASKS,
    TASKS_FINISHED,
    EXECUTE_TASKS,
    EVENT_BATCH,
];
/// Queue-manager → resolver: these tasks finished. Payload: `TasksFinished`.
pub const TASKS_FINISHED: &str = "tasks_finished";
/// Queue-manager → resolver: drop a finished workflow's state. Payload: `WorkflowRef`.
pub const WORKFLOW_FORGET: &str = "workflow_forget";

/// Provider → engine and engine → queue-manager, every couple of seconds: the task
/// attempts it still holds. Payload: `HeldTasks`. A task the receiver handed out but the
/// holder no longer reports twice in a row was lost (a message dropped while the hub
/// restarted, a provider that forgot it) and is run again.
pub const TASKS_HELD: &str = "tasks_held";

/// Hub → queue-manager: who owns a workflow (asked when a USER joins its room).
/// Payload: `WorkflowRef`. Reply: `{workflow_id, owner}` (`owner` null when unknown).
pub const WORKFLOW_OWNER: &str = "workflow_owner";

// ---- Identity (target: hub) ----

/// Any client → hub: who am I? Reply: `{user, role, key_id}`.
pub const AUTH_WHOAMI: &str = "auth_whoami";
/// ADMIN → hub: create a user. Payload: `{name, role}`. Reply: the user.
pub const AUTH_USER_CREATE: &str = "auth_user_create";
/// ADMIN → hub: every user. Reply: `[{name, role, created_at}]`.
pub const AUTH_USER_LIST: &str = "auth_user_list";
/// ADMIN → hub: make a key. Payload: `{name, user, expires_days?, component_types?}`.
/// Reply: `{key: {id, name, user, …}, api_key}`; `api_key` is shown this once.
pub const AUTH_KEY_CREATE: &str = "auth_key_create";
/// ADMIN → hub: every key without secrets. Reply: `[{id, name, user, state, …}]`.
pub const AUTH_KEY_LIST: &str = "auth_key_list";
/// ADMIN → hub: revoke a key. Payload: `{id}`. Reply: the key. Its sockets are closed.
pub const AUTH_KEY_REVOKE: &str = "auth_key_revoke";

/// Well-known rooms.
pub mod rooms {
    /// Component joins, departures and health changes.
    pub const COMPONENTS: &str = "components";
    /// Every workflow and task event.
    pub const EVENTS: &str = "events";

    /// Prefix of the room of one workflow's events.
    pub const WORKFLOW_PREFIX: &str = "workflow:";
    /// Prefix of the room of one workflow's own events (no task events).
    pub const SUMMARY_PREFIX: &str = "summary:";

    /// The room of one workflow's events.
    pub fn workflow(id: &str) -> String {
        format!("{WORKFLOW_PREFIX}{id}")
    }

    /// The room of one workflow's own events: submitted, started, progress (at most four a
    /// second) and its end, and no task events. For watchers that show a
    /// bar or a summary: a 100,000-task run sends them a few messages, not 300,000 events.
    pub fn summary(id: &str) -> String {
        format!("{SUMMARY_PREFIX}{id}")
    }

    /// The workflow a `workflow:<id>` or `summary:<id>` room belongs to.
    pub fn workflow_of(room: &str) -> Option<&str> {
        room.strip_prefix(WORKFLOW_PREFIX)
            .or_else(|| room.strip_prefix(SUMMARY_PREFIX))
    }

    /// Rooms whose watchers receive task events: `events` and `workflow:<id>` (what
    /// [`super::ROOMS_WATCHED`] reports).
    pub fn carries_task_events(room: &str) -> bool {
        room == EVENTS || room.starts_with(WORKFLOW_PREFIX)
    }
}

/// Component types of the suite (the `component_type` they register with).
pub mod component_types {
    /// The queue-manager service.
    pub const QUEUE_MANAGER: &str = "queue-manager";
    /// The dependency-resolver service.
    pub const DEPENDENCY_RESOLVER: &str = "dependency-resolver";
    /// The execution-engine service.
    pub const EXECUTION_ENGINE: &str = "execution-engine";
    /// The Ollama (LLM) provider.
    pub const OLLAMA_PROVIDER: &str = "ollama-provider";
    /// The Python provider.
    pub const PYTHON_PROVIDER: &str = "python-provider";
    /// The HTTP provider (`http/request`).
    pub const HTTP_PROVIDER: &str = "http-provider";
}

/// Events the hub handles itself (target `hub`).
pub const HUB_EVENTS: &[&str] = &[
    REGISTER,
    HEARTBEAT,
    DEREGISTER,
    SUBSCRIBE,
    UNSUBSCRIBE,
    LIST_COMPONENTS,
    HUB_STATUS,
    SHUTDOWN_REQUEST,
    AUTH_WHOAMI,
    AUTH_USER_CREATE,
    AUTH_USER_LIST,
    AUTH_KEY_CREATE,
    AUTH_KEY_LIST,
    AUTH_KEY_REVOKE,
];
