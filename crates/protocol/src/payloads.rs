//! Typed payloads of the lifecycle events.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Payload of `register`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RegisterPayload {
    /// Component type, e.g. `python-provider`.
    pub component_type: String,
    /// Unique id of this instance, e.g. `python-provider-3f2a`.
    pub component_id: String,
    /// What it serves: methods such as `python/execute`, or roles.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// How many units of work it takes at once (0 = not a worker).
    #[serde(default)]
    pub capacity: u32,
    /// Units of work in progress now.
    #[serde(default)]
    pub load: u32,
    /// Software version.
    #[serde(default)]
    pub version: String,
    /// Host name.
    #[serde(default)]
    pub host: String,
    /// Process id.
    #[serde(default)]
    pub pid: u32,
    /// Free-form details (endpoints, store kind, …).
    #[serde(default)]
    pub metadata: Value,
}

/// Payload of `registered`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RegisteredPayload {
    /// The id the hub registered (the one asked for).
    pub component_id: String,
    /// How often to send heartbeats, in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// The hub's own id.
    pub hub_id: String,
}

/// Payload of `heartbeat`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct HeartbeatPayload {
    /// Units of work in progress.
    #[serde(default)]
    pub load: u32,
    /// New capacity, if it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
    /// Updated metadata, if it changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// Payload of `subscribe` / `unsubscribe`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SubscribePayload {
    /// Rooms to join or leave, e.g. `components`, `events`, `workflow:<id>`.
    pub rooms: Vec<String>,
}

/// Health of a registered component.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ComponentHealth {
    /// Heartbeats arrive on time.
    Healthy,
    /// Heartbeats are late; not routed to.
    Unhealthy,
}

/// One row of the component registry.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ComponentInfo {
    /// Registration data.
    #[serde(flatten)]
    pub registration: RegisterPayload,
    /// Current health.
    pub health: ComponentHealth,
    /// Requests routed to it and not yet answered.
    pub in_flight: u32,
    /// When it registered (ms since epoch).
    pub connected_at: u64,
    /// When its last heartbeat arrived (ms since epoch).
    pub last_heartbeat: u64,
    /// The hub it is connected to (several hubs on one Redis list each other's components).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_id: Option<String>,
}

/// Payload of `rooms_watched` (hub → queue-manager): event rooms that gained or lost their
/// last watcher anywhere in the mesh.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct RoomsWatched {
    /// `watched` is every watched room; forget what was known before.
    #[serde(default)]
    pub reset: bool,
    /// Rooms that have watchers now.
    #[serde(default)]
    pub watched: Vec<String>,
    /// Rooms that have none now.
    #[serde(default)]
    pub unwatched: Vec<String>,
}

/// Payload of `component_left`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ComponentLeft {
    /// Component id.
    pub component_id: String,
    /// Component type.
    pub component_type: String,
    /// `disconnected`, `deregistered`, `heartbeat_timeout` or `replaced`.
    #[serde(default)]
    pub reason: String,
}

/// Payload of `system_alert`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SystemAlert {
    /// `component_lost`, `component_unhealthy`, `endpoint_cooldown`, `endpoint_unhealthy`,
    /// `endpoint_recovered` or `queue_backlog`.
    pub kind: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// What happened, for people.
    pub message: String,
    /// The component concerned, if one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_id: Option<String>,
    /// Its type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_type: Option<String>,
    /// Kind-specific facts (endpoint name and states, the method and how long it waited).
    #[serde(default)]
    pub details: Value,
}

/// Reply payload of `hub_status`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct HubStatus {
    /// `ok` while serving.
    pub status: String,
    /// The hub's id.
    pub hub_id: String,
    /// Software version.
    pub version: String,
    /// Protocol version.
    pub protocol_version: u32,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Registered components.
    pub components: usize,
    /// Connected sockets (components and clients).
    pub connections: usize,
    /// Envelopes routed since start.
    pub messages_routed: u64,
    /// Malformed or unroutable envelopes answered with an error since start.
    pub messages_rejected: u64,
    /// Present when this hub relays to other hubs over Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshStatus>,
}

/// The hub mesh as one hub sees it (part of [`HubStatus`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MeshStatus {
    /// True while the hub's Redis connections are up.
    pub redis_connected: bool,
    /// Other hubs heard from recently, by id.
    pub peers: Vec<String>,
    /// Messages relayed to other hubs since start.
    pub relayed_out: u64,
    /// Messages received from other hubs since start.
    pub relayed_in: u64,
    /// Messages that could not be relayed (Redis unreachable) since start.
    pub dropped: u64,
    /// Messages from another live hub using this hub's id (a misconfiguration: every hub of
    /// a mesh needs its own id).
    #[serde(default)]
    pub id_conflicts: u64,
}

/// One task handed to a provider (inside `execute_tasks`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ExecuteTask {
    /// Workflow id.
    pub workflow_id: String,
    /// Task id within the workflow.
    pub task_id: String,
    /// Attempt number (1-based); outcomes carry it back so late duplicates are recognised.
    pub attempt: u32,
    /// Method, e.g. `python/execute`.
    pub method: String,
    /// Parameters after substitution.
    #[serde(default)]
    pub params: Value,
    /// Time limit in milliseconds, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Folder of the workflow file on the submitter's disk. Providers do not use it, except
    /// to find a file the task names that did not travel in `files` (an old client's task),
    /// when that path exists on the provider and passes its confinement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<String>,
    /// The files the task names (a script, images, a batch input), as the submitter read
    /// them: providers read these instead of a path on their own disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<TaskFile>,
}

/// An [`ExecuteTask`] that borrows its parts, for writing one as JSON without copying its
/// parameters and files first (the queue-manager's lease replies). Serializes exactly as
/// the [`ExecuteTask`] with the same values.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExecuteTaskRef<'a, P: Serialize + ?Sized = Value> {
    /// Workflow id.
    pub workflow_id: &'a str,
    /// Task id within the workflow.
    pub task_id: &'a str,
    /// Attempt number (1-based).
    pub attempt: u32,
    /// Method, e.g. `python/execute`.
    pub method: &'a str,
    /// Parameters after substitution (a [`Value`], or the queue-manager's
    /// [`crate::records::JsonText`]).
    pub params: &'a P,
    /// Time limit in milliseconds, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Folder of the workflow file on the submitter's disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<&'a str>,
    /// The files the task names.
    #[serde(skip_serializing_if = "<[TaskFile]>::is_empty")]
    pub files: &'a [TaskFile],
}

impl<'a> From<&'a ExecuteTask> for ExecuteTaskRef<'a, Value> {
    fn from(t: &'a ExecuteTask) -> Self {
        ExecuteTaskRef {
            workflow_id: &t.workflow_id,
            task_id: &t.task_id,
            attempt: t.attempt,
            method: &t.method,
            params: &t.params,
            timeout_ms: t.timeout_ms,
            base_dir: t.base_dir.as_deref(),
            files: &t.files,
        }
    }
}

/// One file a task names, with its content (inside [`ExecuteTask`]); read by the submitter
/// and carried by the workflow (`docs/workflows.md`, "Files travel with the workflow").
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskFile {
    /// The path as the task's parameters write it (e.g. `scripts/fetch.py`).
    pub path: String,
    /// `sha256:<64 hex digits>` of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The content, base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Why the submitter could not read it (a batch input that vanished, or one too large to
    /// travel): the task fails with this error instead of running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::GzError>,
}

impl TaskFile {
    /// The file of `path` in `files`, if the task carries it.
    pub fn find<'a>(files: &'a [TaskFile], path: &str) -> Option<&'a TaskFile> {
        files.iter().find(|f| f.path == path)
    }
}

/// Payload of `execute_tasks` (engine → provider): a batch of tasks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ExecuteTasks {
    /// The tasks.
    pub tasks: Vec<ExecuteTask>,
}

/// The outcome of one task attempt (inside `task_outcomes`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskOutcome {
    /// Workflow id.
    pub workflow_id: String,
    /// Task id.
    pub task_id: String,
    /// The attempt this outcome belongs to.
    pub attempt: u32,
    /// The result, on success (kept as JSON text: the queue-manager stores and passes it
    /// on without parsing it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<crate::records::JsonText>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::GzError>,
    /// Which provider instance ran it.
    #[serde(default)]
    pub provider_id: String,
    /// Start time (ms since epoch).
    #[serde(default)]
    pub started_at: u64,
    /// End time (ms since epoch).
    #[serde(default)]
    pub finished_at: u64,
}

impl TaskOutcome {
    /// The outcome of attempt `attempt` of a task, finishing now: `result` becomes either
    /// `result` or `error`.
    pub fn finished(
        workflow_id: String,
        task_id: String,
        attempt: u32,
        result: Result<Value, crate::GzError>,
        provider_id: String,
        started_at: u64,
    ) -> TaskOutcome {
        let (result, error) = match result {
            Ok(v) => (Some(crate::records::JsonText::of_value(&v)), None),
            Err(e) => (None, Some(e)),
        };
        TaskOutcome {
            workflow_id,
            task_id,
            attempt,
            result,
            error,
            provider_id,
            started_at,
            finished_at: crate::envelope::now_millis(),
        }
    }
}

/// Payload of `task_outcomes` (provider → engine → queue-manager): a batch of outcomes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskOutcomes {
    /// The outcomes.
    pub outcomes: Vec<TaskOutcome>,
    /// An engine's next lease request, sent with the outcomes that freed its slots (engine
    /// → queue-manager only): the queue-manager handles the outcomes, then the request, and
    /// answers it as it answers `lease_tasks` (the envelope is then a request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseTasks>,
}

/// A task named by workflow and task id.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
pub struct TaskRef {
    /// Workflow id.
    pub workflow_id: String,
    /// Task id.
    pub task_id: String,
}

/// One task attempt a component holds (inside `tasks_held`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
pub struct HeldTask {
    /// Workflow id.
    pub workflow_id: String,
    /// Task id.
    pub task_id: String,
    /// Attempt.
    pub attempt: u32,
}

/// Payload of `tasks_held`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct HeldTasks {
    /// Every attempt the sender holds for the receiver (possibly none).
    pub tasks: Vec<HeldTask>,
}

/// Payload of `cancel_tasks` (engine → provider): stop these tasks if they run.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct CancelTasks {
    /// The tasks.
    pub tasks: Vec<TaskRef>,
}

/// Payload of `workflow_submit` (client → queue-manager). Answered with
/// `{workflow_id, total_tasks}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct SubmitWorkflow {
    /// The id to give the run (chosen by the client so it can join the workflow's room
    /// before submitting); generated when absent. Must be unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// The workflow as JSON (the `gleitzeit-workflow` spec; validated again on arrival),
    /// read by the queue-manager straight from its text.
    pub spec: crate::records::JsonText,
    /// Folder relative paths resolve against (the workflow file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_dir: Option<String>,
    /// A key the client makes once per submission (a UUID; 1..=200 characters): a submit
    /// retried with the same key and the same spec answers the first one's workflow id
    /// instead of creating a second workflow; the same key with another spec is GZ3031.
    /// The store keeps it with the workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Payload of `workflow_get`, `workflow_cancel`: one workflow by id.
///
/// `workflow_get` answers `{workflow, counts, tasks}`; with `summary: true` the `tasks` list
/// is left empty (cheap enough to poll for workflows of 100,000 tasks). A big workflow's
/// tasks are read in pages: `limit` tasks from position `offset` (in the workflow's order,
/// fan-out members after the tasks of the spec), only those of one `status` when it is
/// given; the reply's `next_offset` says where the next page starts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowRef {
    /// Workflow id.
    pub workflow_id: String,
    /// `workflow_get` only: leave out the task list.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub summary: bool,
    /// `workflow_get` only: the tasks start at this position (of those of `status`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: usize,
    /// `workflow_get` only: at most this many tasks (1 to [`MAX_TASKS_PAGE`]; without it,
    /// every task).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// `workflow_get` only: only the tasks of this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<crate::status::TaskStatus>,
}

/// Most tasks one page of `workflow_get` holds (a larger `limit` is clamped to it).
pub const MAX_TASKS_PAGE: usize = 10_000;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl WorkflowRef {
    /// One workflow by id (every task when it is a `workflow_get`).
    pub fn id(workflow_id: impl Into<String>) -> Self {
        WorkflowRef {
            workflow_id: workflow_id.into(),
            ..Default::default()
        }
    }

    /// The page size asked for, within 1..=[`MAX_TASKS_PAGE`]; `None`: every task.
    pub fn page_limit(&self) -> Option<usize> {
        self.limit.map(|l| l.clamp(1, MAX_TASKS_PAGE))
    }
}

/// Payload of `workflow_list`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ListWorkflows {
    /// At most this many (default 20).
    #[serde(default)]
    pub limit: Option<usize>,
    /// Only this status (`running`, `completed`, …).
    #[serde(default)]
    pub status: Option<String>,
}

/// Payload of `task_get`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TaskLookup {
    /// Workflow id (optional: search all workflows, newest first).
    #[serde(default)]
    pub workflow_id: Option<String>,
    /// Task id.
    pub task_id: String,
}

/// Payload of `lease_tasks` (engine → queue-manager): free slots per method. Answered with
/// `{queue_manager_id, tasks: [ExecuteTask]}` as soon as tasks are ready, or empty after
/// `wait_ms` (long poll).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct LeaseTasks {
    /// Method → free slots.
    pub slots: std::collections::BTreeMap<String, u32>,
    /// How long to hold the request when nothing is ready.
    #[serde(default)]
    pub wait_ms: u64,
    /// Every method this engine has a provider for, busy or not. A queue-manager fails
    /// queued tasks of a method that no engine has offered for a while (GZ2015) instead of
    /// letting them wait forever.
    #[serde(default)]
    pub served: Vec<String>,
}

/// Reply to `lease_tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct LeasedTasks {
    /// The queue-manager that owns these tasks (outcomes go back to it).
    pub queue_manager_id: String,
    /// Tasks to run now.
    pub tasks: Vec<ExecuteTask>,
}

/// A finished task as the dependency-resolver needs to know it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct FinishedTask {
    /// Task id.
    pub task_id: String,
    /// `completed`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    /// A completed task's result; for a failed task `{"error": GzError}` (what a
    /// `tolerate_failures` dependent receives); absent otherwise. Kept as JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<crate::records::JsonText>,
}

/// Payload of `workflow_plan` (queue-manager → resolver): the whole workflow plus what has
/// already finished (so a restarted resolver rebuilds). Answered with a `Resolution`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct WorkflowPlan {
    /// Workflow id.
    pub workflow_id: String,
    /// The spec as JSON (passed on as text, not parsed by the queue-manager).
    pub spec: crate::records::JsonText,
    /// Tasks already finished.
    #[serde(default)]
    pub finished: Vec<FinishedTask>,
    /// Tasks already queued or running (not to be reported ready again).
    #[serde(default)]
    pub started: Vec<String>,
}

/// Payload of `tasks_finished` (queue-manager → resolver). Answered with a `Resolution`, or
/// GZ3020 when the resolver does not know the workflow (then the queue-manager re-plans).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct TasksFinished {
    /// Workflow id.
    pub workflow_id: String,
    /// What finished.
    pub finished: Vec<FinishedTask>,
}

/// A task whose dependencies are met, with substituted parameters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct ReadyTask {
    /// Task id.
    pub task_id: String,
    /// Parameters after substitution, as JSON text (the queue-manager stores and hands them
    /// out without parsing them).
    pub params: crate::records::JsonText,
}

/// A task that will not run, and why.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct BlockedTask {
    /// Task id.
    pub task_id: String,
    /// Why (GZ3004 dependency failed, GZ3013 substitution failed).
    pub error: crate::GzError,
}

/// The resolver's answer: newly ready tasks, tasks to skip, tasks that fail before running.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Resolution {
    /// The resolver instance that holds this workflow.
    #[serde(default)]
    pub resolver_id: String,
    /// Ready to queue.
    #[serde(default)]
    pub ready: Vec<ReadyTask>,
    /// Dependents of failed tasks.
    #[serde(default)]
    pub skipped: Vec<BlockedTask>,
    /// Tasks whose parameters could not be resolved (and fan-out templates whose members
    /// did not all complete, or whose list could not be read).
    #[serde(default)]
    pub failed: Vec<BlockedTask>,
    /// Fan-outs made: the tasks a template (`batch: {from}`) makes, one per item.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expanded: Vec<Expansion>,
    /// Fan-out templates whose members all completed: they complete with this result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<JoinedTask>,
    /// Tasks that one more completion releases: the queue-manager queues each as soon as
    /// the task it waits for completes, without waiting for this resolver's answer
    /// (`docs/protocol.md`, "Primed tasks").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primed: Vec<PrimedTask>,
}

impl Resolution {
    /// Appends what `other` decided (resolver id kept).
    pub fn extend(&mut self, other: Resolution) {
        self.ready.extend(other.ready);
        self.skipped.extend(other.skipped);
        self.failed.extend(other.failed);
        self.expanded.extend(other.expanded);
        self.joined.extend(other.joined);
        self.primed.extend(other.primed);
    }
}

/// A task waiting for one last dependency that has been released: when `after` completes,
/// the task is ready with `params`, in which `${…}` references (to `after` only) are still
/// to be substituted with `after`'s result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct PrimedTask {
    /// The task released by the completion.
    pub task_id: String,
    /// The task whose completion releases it.
    pub after: String,
    /// Its parameters as the spec gives them.
    pub params: Value,
}

/// The tasks one fan-out template made (`docs/workflows.md`, "Fan-out over a result").
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Expansion {
    /// The template's task id.
    pub template: String,
    /// One task per item, in item order; each takes the template's method, priority,
    /// retry and timeout.
    pub members: Vec<MemberTask>,
}

/// One task a fan-out made.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MemberTask {
    /// `<template>-00001`…
    pub task_id: String,
    /// Display name: `<template name> [<item index>]`.
    pub name: String,
    /// Parameters after substitution (`${item}`, `${item_index}` and references); absent
    /// when they could not be substituted: then `error` says why and the task fails at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<crate::records::JsonText>,
    /// Why its parameters could not be substituted (GZ3013).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::GzError>,
}

/// A fan-out template that completes with the joined results of its members.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct JoinedTask {
    /// The template's task id.
    pub task_id: String,
    /// `{"result": [...], "results": [...], "completed", "failed"}`, as JSON text.
    pub result: crate::records::JsonText,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_execute_task_is_written_as_the_owned_one() {
        let full = ExecuteTask {
            workflow_id: "w".into(),
            task_id: "t\"1".into(),
            attempt: 2,
            method: "python/execute".into(),
            params: serde_json::json!({ "a": [1, "x"], "b": null }),
            timeout_ms: Some(5),
            base_dir: Some("/d".into()),
            files: vec![TaskFile {
                path: "s.py".into(),
                sha256: Some("sha256:00".into()),
                content: Some("eA==".into()),
                error: None,
            }],
        };
        let bare = ExecuteTask {
            timeout_ms: None,
            base_dir: None,
            files: Vec::new(),
            ..full.clone()
        };
        for t in [full, bare] {
            let borrowed = serde_json::to_string(&ExecuteTaskRef::from(&t)).expect("ref");
            assert_eq!(borrowed, serde_json::to_string(&t).expect("owned"));
            let back: ExecuteTask = serde_json::from_str(&borrowed).expect("reads back");
            assert_eq!(back, t);
        }
    }
}
