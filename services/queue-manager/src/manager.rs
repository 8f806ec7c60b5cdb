//! The queue-manager's state machine. One task owns it (no locks); slow calls (the store,
//! the resolver) either run on blocking threads and are awaited, or are spawned and report
//! back through [`Internal`] messages.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types};
use gleitzeit_protocol::payloads::{
    CancelTasks, ExecuteTask, FinishedTask, HeldTasks, LeaseTasks, LeasedTasks, ListWorkflows,
    Resolution, SubmitWorkflow, TaskLookup, TaskOutcomes, TaskRef, TasksFinished, WorkflowPlan,
    WorkflowRef,
};
use gleitzeit_protocol::{Envelope, Target};
use gleitzeit_store::{Store, StoreError, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus};
use gleitzeit_workflow::{prepare_spec, MethodCatalog, OnFailure, RetryPolicy, WorkflowSpec};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::events_log::EventLog;
use crate::queue::ReadyQueue;

/// Messages the manager sends itself from spawned work.
#[derive(Debug)]
pub enum Internal {
    /// The resolver answered (or failed to).
    Resolution {
        /// Workflow id.
        workflow_id: String,
        /// Its answer.
        result: Result<Resolution, GzError>,
    },
    /// Time to send the workflow to a resolver again.
    Replan {
        /// Workflow id.
        workflow_id: String,
    },
}

/// Task results are included in `workflow_completed` only for workflows up to this size.
const RESULTS_IN_EVENT_LIMIT: usize = 1000;
/// Lease requests that waited here longer than this (ms, corrected for the sender's clock:
/// `clocks.rs`) are dropped: the engine's own timeout is 10 s.
const STALE_LEASE_MS: u64 = 5_000;
/// How long ownership of a workflow lasts without renewal; renewed every [`OWNER_RENEW`].
const OWNER_TTL: Duration = Duration::from_secs(10);
/// How often ownership is renewed and unowned workflows are looked for.
const OWNER_RENEW: Duration = Duration::from_secs(3);
/// Extra attempts granted to tasks whose provider disappeared while running them.
const LOST_WORK_REQUEUES: u32 = 5;
/// How long a resolver request may take.
const RESOLVER_TIMEOUT: Duration = Duration::from_secs(20);

struct TaskInfo {
    priority: u8,
    retry: RetryPolicy,
    timeout_ms: Option<u64>,
    engine: Option<String>,
    /// Consecutive reports of its engine that did not list it.
    missed: u32,
}

struct Wf {
    record: WorkflowRecord,
    on_failure: OnFailure,
    tasks: Vec<TaskRecord>,
    info: Vec<TaskInfo>,
    index: HashMap<String, usize>,
    resolver: Option<String>,
    deadline: Option<Instant>,
    terminal: usize,
    failed: usize,
    skipped: usize,
    completed: usize,
}

struct Lease {
    env: Envelope,
    slots: BTreeMap<String, u32>,
    deadline: Instant,
}

#[derive(Default)]
struct Changes {
    tasks: Vec<(String, usize)>,
    workflows: HashSet<String>,
}

impl Changes {
    fn task(&mut self, wf: &str, i: usize) {
        self.tasks.push((wf.to_string(), i));
    }
}

pub(crate) struct Manager {
    store: Arc<dyn Store>,
    client: HubClient,
    tx: mpsc::UnboundedSender<Internal>,
    catalog: MethodCatalog,
    wfs: HashMap<String, Wf>,
    queue: ReadyQueue,
    leases: VecDeque<Lease>,
    /// When ownership of the workflows in memory was last renewed.
    last_ownership: Instant,
    /// Numbered events for catch-up (`workflow_events`).
    events: std::cell::RefCell<EventLog>,
    /// When an engine last offered each method (busy or not), and since when this
    /// queue-manager runs: queued tasks of a method nobody serves fail after the grace.
    method_seen: HashMap<String, Instant>,
    started: Instant,
    provider_grace: Duration,
    retries: Vec<(Instant, String, usize)>,
    /// Senders' clock offsets, to tell how long a message waited here.
    clocks: crate::clocks::Clocks,
    /// An engine silent this long loses the tasks it holds (they are queued again).
    lease_timeout: Duration,
    /// When each engine last sent a lease request, an outcome or a held-task report: the
    /// heartbeats that extend its leases.
    engine_seen: HashMap<String, Instant>,
    /// When the last tick ran (a long gap means this queue-manager itself stalled).
    last_tick: Instant,
    last_lease_check: Instant,
}

/// A store failure as a wire error: GZ1001 when Redis is unreachable, else GZ5001.
fn gz(e: StoreError) -> GzError {
    let code = ErrorCode::from_code(e.code()).unwrap_or(ErrorCode::StoreFailed);
    GzError::new(code, e.to_string())
}

fn status_word<T: serde::Serialize>(s: T) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What a request wants to do with a workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Cancel,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Cancel => "cancel",
        }
    }
}

/// Whether an identity reaches every workflow: the roles that read all, and SERVICE, which
/// the hub lets through only for queue-managers (forwarding a checked request).
fn sees_all(who: &gleitzeit_protocol::Identity) -> bool {
    who.reads_all_workflows() || who.role == gleitzeit_protocol::Role::Service
}

/// A workflow record for replies: everything but the (possibly huge) spec.
fn record_without_spec(r: &WorkflowRecord) -> WorkflowRecord {
    WorkflowRecord {
        id: r.id.clone(),
        name: r.name.clone(),
        status: r.status,
        spec: Value::Null,
        base_dir: r.base_dir.clone(),
        total_tasks: r.total_tasks,
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        error: r.error.clone(),
        owner: r.owner.clone(),
    }
}

/// Task counts by status.
fn counts(tasks: &[TaskRecord]) -> Value {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        *by.entry(status_word(t.status)).or_default() += 1;
    }
    let n = |k: &str| by.get(k).copied().unwrap_or(0);
    json!({
        "total": tasks.len(), "completed": n("completed"), "failed": n("failed"), "skipped": n("skipped"),
        "cancelled": n("cancelled"), "running": n("running"), "queued": n("queued"), "pending": n("pending"),
        "retrying": n("retrying"),
        "finished": n("completed") + n("failed") + n("skipped") + n("cancelled"),
    })
}

impl Manager {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        client: HubClient,
        tx: mpsc::UnboundedSender<Internal>,
        provider_grace: Duration,
        lease_timeout: Duration,
    ) -> Self {
        Manager {
            store,
            client,
            tx,
            catalog: MethodCatalog::builtin(),
            wfs: HashMap::new(),
            queue: ReadyQueue::default(),
            leases: VecDeque::new(),
            last_ownership: Instant::now(),
            events: std::cell::RefCell::new(EventLog::default()),
            method_seen: HashMap::new(),
            started: Instant::now(),
            provider_grace,
            retries: Vec::new(),
            clocks: crate::clocks::Clocks::default(),
            lease_timeout,
            engine_seen: HashMap::new(),
            last_tick: Instant::now(),
            last_lease_check: Instant::now(),
        }
    }

    /// Runs a store call. Calls are short (one transaction), so they run on the manager's
    /// own thread: handing each to the blocking pool cost more in wake-ups than the call.
    async fn blocking<T>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError>,
    ) -> Result<T, GzError> {
        f(self.store.as_ref()).map_err(gz)
    }

    /// Writes what changed in one transaction.
    async fn flush(&mut self, changes: Changes) -> Result<(), GzError> {
        if changes.tasks.is_empty() && changes.workflows.is_empty() {
            return Ok(());
        }
        let mut seen = HashSet::new();
        let tasks: Vec<TaskRecord> = changes
            .tasks
            .iter()
            .filter(|k| seen.insert((*k).clone()))
            .filter_map(|(w, i)| self.wfs.get(w).and_then(|wf| wf.tasks.get(*i)).cloned())
            .collect();
        let workflows: Vec<WorkflowRecord> = changes
            .workflows
            .iter()
            .filter_map(|w| self.wfs.get(w).map(|wf| wf.record.clone()))
            .collect();
        // While the store is unreachable (GZ1001) the manager waits here: it takes no new
        // work, keeps what it holds, and goes on when the store is back. Other store errors
        // are returned (the caller acknowledges nothing).
        let mut pause = Duration::from_millis(100);
        let mut warned = false;
        loop {
            match self.blocking(|s| s.apply(&workflows, &tasks)).await {
                Ok(()) => {
                    if warned {
                        info!("store reachable again; resuming");
                    }
                    return Ok(());
                }
                Err(e) if e.is(ErrorCode::RedisUnavailable) => {
                    if !warned {
                        warn!(code = %e.code, error = %e.message, "store unreachable: holding work until it is back");
                        warned = true;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    warn!(code = %e.code, error = %e.message, "could not persist changes; nothing was acknowledged");
                    return Err(e);
                }
            }
        }
    }

    fn emit(&self, wf: &str, event: &str, mut payload: Value) {
        let target = Target::Room(format!(
            "{},{}",
            events::rooms::EVENTS,
            events::rooms::workflow(wf)
        ));
        let envelope = Envelope::new(target, event, Value::Null);
        self.events
            .borrow_mut()
            .record(wf, event, &mut payload, envelope.ts);
        let envelope = Envelope {
            payload,
            ..envelope
        };
        if let Err(e) = self.client.send(envelope) {
            warn!(error = %e, event, "could not publish an event");
        }
    }

    fn task_event(&self, wf: &Wf, i: usize, event: &str) {
        let t = &wf.tasks[i];
        let duration = match (t.started_at, t.finished_at) {
            (Some(s), Some(f)) => Some((f.saturating_sub(s)) as f64 / 1000.0),
            _ => None,
        };
        self.emit(
            &wf.record.id,
            event,
            json!({
                "workflow_id": wf.record.id, "task_id": t.task_id, "task_name": t.name, "method": t.method,
                "status": status_word(t.status), "attempt": t.attempts, "result": t.result, "error": t.error,
                "provider_id": t.provider_id, "endpoint": t.provider_id, "duration_seconds": duration,
            }),
        );
    }

    fn progress(&self, wf: &Wf) -> Value {
        json!({
            "workflow_id": wf.record.id, "name": wf.record.name, "status": status_word(wf.record.status),
            "total_tasks": wf.tasks.len(), "completed_tasks": wf.completed, "failed_tasks": wf.failed,
            "skipped_tasks": wf.skipped, "finished_tasks": wf.terminal,
        })
    }

    // ---------------------------------------------------------------- envelopes

    pub(crate) async fn on_envelope(&mut self, env: Envelope) {
        let reply = match env.event.as_str() {
            events::WORKFLOW_SUBMIT => Some(self.submit(&env).await),
            events::WORKFLOW_GET => Some(self.get(&env).await),
            events::WORKFLOW_LIST => Some(self.list(&env).await),
            events::WORKFLOW_CANCEL => self.cancel(&env).await.transpose(),
            events::TASK_GET => Some(self.task_get(&env).await),
            events::WORKFLOW_EVENTS => self.events_since(&env).await.transpose(),
            events::WORKFLOW_OWNER => Some(self.owner_query(&env).await),
            events::STORE_STATUS => Some(
                serde_json::to_value(self.store.info())
                    .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string())),
            ),
            events::LEASE_TASKS => {
                self.engine_heard(&env.source);
                self.lease(env.clone()).await
            }
            events::TASK_OUTCOMES => {
                self.engine_heard(&env.source);
                self.outcomes(&env).await;
                None
            }
            events::TASKS_HELD => {
                self.engine_heard(&env.source);
                if let Ok(held) = env.payload_as::<HeldTasks>() {
                    self.clocks.age(&env.source, env.ts, now_millis());
                    let sent_at = self.clocks.to_local(&env.source, env.ts);
                    self.engine_holds(&env.source, sent_at, held).await;
                }
                None
            }
            events::COMPONENT_LEFT => {
                // Only the hub says who left (a forged departure would run tasks twice).
                let from_hub = env.auth.as_ref().is_some_and(|a| a.is_hub());
                match env.payload.get("component_id").and_then(Value::as_str) {
                    Some(id) if from_hub => self.engine_lost(id).await,
                    _ => warn!(from = %env.source, "component_left not from the hub; ignored"),
                }
                None
            }
            events::COMPONENT_JOINED | events::COMPONENT_UNHEALTHY => None,
            other => Some(Err(GzError::new(
                ErrorCode::UnknownEvent,
                format!("queue-manager does not handle {other:?}"),
            ))),
        };
        if let Some(r) = reply {
            let _ = self.client.respond(&env, r);
        }
    }

    /// The store in use and its health.
    pub(crate) fn store_info(&self) -> gleitzeit_store::StoreInfo {
        self.store.info()
    }

    pub(crate) async fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Resolution {
                workflow_id,
                result: Ok(res),
            } => self.apply_resolution(&workflow_id, res).await,
            Internal::Resolution {
                workflow_id,
                result: Err(e),
            } => {
                if !self.wfs.contains_key(&workflow_id) {
                    return;
                }
                warn!(workflow = %workflow_id, error = %e, "resolver request failed; planning again");
                if let Some(wf) = self.wfs.get_mut(&workflow_id) {
                    wf.resolver = None;
                }
                // A resolver that lost the workflow (restarted) is re-planned at once; other
                // failures (no resolver yet, timeouts) after a pause.
                let wait = if e.is(ErrorCode::WorkflowNotFound) {
                    0
                } else {
                    500
                };
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    let _ = tx.send(Internal::Replan { workflow_id });
                });
            }
            Internal::Replan { workflow_id } => self.plan(&workflow_id, None),
        }
    }
    pub(crate) async fn on_tick(&mut self) {
        let now = Instant::now();
        if now.duration_since(self.last_tick) > Duration::from_secs(2) {
            // This queue-manager stalled (store outage, overload): engines' silence meanwhile
            // is not theirs, so their leases start afresh.
            for seen in self.engine_seen.values_mut() {
                *seen = now;
            }
        }
        self.last_tick = now;
        if now.duration_since(self.last_lease_check) >= Duration::from_secs(1) {
            self.last_lease_check = now;
            self.expire_leases(now).await;
        }
        if now.duration_since(self.last_ownership) >= OWNER_RENEW {
            self.last_ownership = now;
            self.renew_ownership();
            if let Err(e) = self.recover().await {
                warn!(error = %e, "could not look for workflows to take over");
            }
        }
        self.events.borrow_mut().collect();
        self.fail_unserved(now).await;
        while self.leases.front().is_some_and(|l| l.deadline <= now) {
            if let Some(l) = self.leases.pop_front() {
                let reply = LeasedTasks {
                    queue_manager_id: self.client.id().to_string(),
                    tasks: Vec::new(),
                };
                let _ = self.client.respond(
                    &l.env,
                    serde_json::to_value(reply)
                        .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string())),
                );
            }
        }
        let due: Vec<(String, usize)> = {
            let (due, later): (Vec<_>, Vec<_>) =
                self.retries.drain(..).partition(|(at, _, _)| *at <= now);
            self.retries = later;
            due.into_iter().map(|(_, w, i)| (w, i)).collect()
        };
        let mut changes = Changes::default();
        for (w, i) in due {
            if let Some(wf) = self.wfs.get_mut(&w) {
                if wf.tasks[i].status == TaskStatus::Retrying {
                    wf.tasks[i].status = TaskStatus::Queued;
                    wf.tasks[i].queued_at = Some(now_millis());
                    changes.task(&w, i);
                    self.queue.enqueue(
                        &wf.tasks[i].method,
                        wf.info[i].priority,
                        Arc::from(w.as_str()),
                        i,
                    );
                }
            }
        }
        let expired: Vec<String> = self
            .wfs
            .iter()
            .filter(|(_, wf)| wf.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| k.clone())
            .collect();
        let _ = self.flush(changes).await;
        for w in expired {
            let err = GzError::new(
                ErrorCode::WorkflowTimeout,
                format!("workflow {w} exceeded its timeout"),
            );
            self.stop_workflow(&w, WorkflowStatus::Failed, err).await;
        }
        self.serve_leases().await;
    }

    // ---------------------------------------------------------------- submit and plan

    async fn submit(&mut self, env: &Envelope) -> Result<Value, GzError> {
        let sub: SubmitWorkflow = env.payload_as()?;
        let spec: WorkflowSpec = serde_json::from_value(sub.spec).map_err(|e| {
            GzError::new(
                ErrorCode::ValidationFailed,
                format!("invalid workflow: {e}"),
            )
        })?;
        let parsed = prepare_spec(spec, &self.catalog).map_err(|diags| {
            let first = diags
                .iter()
                .find(|d| d.is_error())
                .map(|d| d.to_string())
                .unwrap_or_default();
            let code = diags
                .iter()
                .find(|d| d.is_error())
                .and_then(|d| ErrorCode::from_code(&d.code))
                .unwrap_or(ErrorCode::ValidationFailed);
            GzError::new(code, first).with_details(
                json!({ "diagnostics": diags.iter().map(|d| d.to_string()).collect::<Vec<_>>() }),
            )
        })?;
        let spec = parsed.spec;
        let id = match sub.workflow_id {
            Some(id) if id.len() <= 200 && !id.is_empty() => id,
            Some(_) => {
                return Err(GzError::new(
                    ErrorCode::InvalidField,
                    "workflow_id must be 1..=200 characters",
                ))
            }
            None => format!("wf-{}", uuid::Uuid::new_v4().simple()),
        };
        let exists = {
            let id = id.clone();
            self.blocking(move |s| s.workflow(&id)).await?.is_some()
        };
        if exists || self.wfs.contains_key(&id) {
            return Err(GzError::new(
                ErrorCode::InvalidField,
                format!("workflow id {id} is already in use"),
            ));
        }
        let now = now_millis();
        let spec_json = serde_json::to_value(&spec)
            .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))?;
        let record = WorkflowRecord {
            id: id.clone(),
            name: spec.name.clone(),
            status: WorkflowStatus::Pending,
            spec: spec_json,
            base_dir: sub.base_dir,
            total_tasks: spec.tasks.len() as u64,
            created_at: now,
            started_at: None,
            finished_at: None,
            error: None,
            owner: env.auth.as_ref().map(|a| a.user.clone()),
        };
        let tasks: Vec<TaskRecord> = spec
            .tasks
            .iter()
            .map(|t| TaskRecord {
                workflow_id: id.clone(),
                task_id: t.id.clone(),
                name: t.name.clone(),
                method: t.method.clone(),
                status: TaskStatus::Pending,
                priority: i32::from(t.priority.level()),
                attempts: 0,
                params: None,
                result: None,
                error: None,
                provider_id: None,
                queued_at: None,
                started_at: None,
                finished_at: None,
            })
            .collect();
        let mut record = record;
        let owner = self.client.id().to_string();
        self.blocking(|s| {
            s.create_workflow(&record, &tasks)?;
            // The submitter owns the new workflow (several queue-managers may share a store).
            s.claim(&record.id, &owner, OWNER_TTL).map(|_| ())
        })
        .await?;
        // The spec lives in the store; memory keeps only the per-task state.
        let spec_json = std::mem::take(&mut record.spec);
        let wf = self.build_wf(record, &spec, tasks);
        drop(spec);
        let total = wf.tasks.len();
        info!(workflow = %id, name = %wf.record.name, tasks = total, "workflow submitted");
        self.emit(&id, events::WORKFLOW_SUBMITTED, self.progress(&wf));
        self.wfs.insert(id.clone(), wf);
        self.plan(&id, Some(spec_json));
        Ok(json!({ "workflow_id": id, "total_tasks": total }))
    }

    fn build_wf(&self, record: WorkflowRecord, spec: &WorkflowSpec, tasks: Vec<TaskRecord>) -> Wf {
        let info = spec
            .tasks
            .iter()
            .map(|t| TaskInfo {
                priority: t.priority.level(),
                retry: t.retry.clone(),
                timeout_ms: t.timeout.map(|s| (s * 1000.0).round() as u64),
                engine: None,
                missed: 0,
            })
            .collect();
        let index = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.task_id.clone(), i))
            .collect();
        let deadline = spec
            .timeout
            .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.001)));
        Wf {
            record,
            on_failure: spec.on_failure,
            tasks,
            info,
            index,
            resolver: None,
            deadline,
            terminal: 0,
            failed: 0,
            skipped: 0,
            completed: 0,
        }
    }

    /// Sends the whole workflow (with what already finished) to a resolver. The spec is
    /// read from the store unless the caller has it at hand.
    fn plan(&mut self, id: &str, spec: Option<Value>) {
        let spec = match spec {
            Some(s) => s,
            None => match self.store.workflow(id) {
                Ok(Some(w)) => w.spec,
                Ok(None) => return,
                Err(e) => {
                    warn!(workflow = %id, error = %e, "cannot read the spec to plan; retrying later");
                    let _ = self.tx.send(Internal::Resolution {
                        workflow_id: id.to_string(),
                        result: Err(gz(e)),
                    });
                    return;
                }
            },
        };
        let Some(wf) = self.wfs.get(id) else { return };
        let mut finished = Vec::new();
        let mut started = Vec::new();
        for t in &wf.tasks {
            match t.status {
                TaskStatus::Pending => {}
                TaskStatus::Queued | TaskStatus::Running | TaskStatus::Retrying => {
                    started.push(t.task_id.clone())
                }
                TaskStatus::Completed => finished.push(FinishedTask {
                    task_id: t.task_id.clone(),
                    status: "completed".into(),
                    result: t.result.clone(),
                }),
                _ => finished.push(FinishedTask {
                    task_id: t.task_id.clone(),
                    status: status_word(t.status),
                    result: None,
                }),
            }
        }
        let plan = WorkflowPlan {
            workflow_id: id.to_string(),
            spec,
            finished,
            started,
        };
        let payload = serde_json::to_value(plan).unwrap_or(Value::Null);
        self.ask_resolver(
            id,
            Target::Type(component_types::DEPENDENCY_RESOLVER.into()),
            events::WORKFLOW_PLAN,
            payload,
        );
    }

    fn ask_resolver(&self, id: &str, target: Target, event: &'static str, payload: Value) {
        let client = self.client.clone();
        let tx = self.tx.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            let result = client
                .request_with_timeout(target, event, payload, RESOLVER_TIMEOUT)
                .await
                .and_then(|v| {
                    serde_json::from_value::<Resolution>(v)
                        .map_err(|e| GzError::new(ErrorCode::InvalidPayload, e.to_string()))
                });
            let _ = tx.send(Internal::Resolution {
                workflow_id: id,
                result,
            });
        });
    }

    fn tell_resolver(&self, id: &str, finished: Vec<FinishedTask>) {
        let Some(wf) = self.wfs.get(id) else { return };
        if finished.is_empty() {
            return;
        }
        let target = match &wf.resolver {
            Some(r) => Target::Component(r.clone()),
            None => Target::Type(component_types::DEPENDENCY_RESOLVER.into()),
        };
        let payload = serde_json::to_value(TasksFinished {
            workflow_id: id.to_string(),
            finished,
        })
        .unwrap_or(Value::Null);
        self.ask_resolver(id, target, events::TASKS_FINISHED, payload);
    }

    async fn apply_resolution(&mut self, id: &str, res: Resolution) {
        let mut changes = Changes::default();
        let now = now_millis();
        let Some(wf) = self.wfs.get_mut(id) else {
            return;
        };
        if !res.resolver_id.is_empty() {
            wf.resolver = Some(res.resolver_id.clone());
        }
        if wf.record.status.is_terminal() {
            return;
        }
        let mut started_now = false;
        if wf.record.status == WorkflowStatus::Pending && !res.ready.is_empty() {
            wf.record.status = WorkflowStatus::Running;
            wf.record.started_at = Some(now);
            changes.workflows.insert(id.to_string());
            started_now = true;
        }
        let key: Arc<str> = Arc::from(id);
        for r in res.ready {
            let Some(&i) = wf.index.get(&r.task_id) else {
                continue;
            };
            if wf.tasks[i].status != TaskStatus::Pending {
                continue;
            }
            let t = &mut wf.tasks[i];
            t.status = TaskStatus::Queued;
            t.params = Some(r.params);
            t.queued_at = Some(now);
            changes.task(id, i);
            self.queue
                .enqueue(&wf.tasks[i].method, wf.info[i].priority, key.clone(), i);
        }
        let mut blocked = Vec::new();
        for (b, status) in res
            .failed
            .into_iter()
            .map(|b| (b, TaskStatus::Failed))
            .chain(res.skipped.into_iter().map(|b| (b, TaskStatus::Skipped)))
        {
            let Some(&i) = wf.index.get(&b.task_id) else {
                continue;
            };
            if wf.tasks[i].status.is_terminal() {
                continue;
            }
            let t = &mut wf.tasks[i];
            t.status = status;
            t.error = serde_json::to_value(&b.error).ok();
            t.finished_at = Some(now);
            wf.terminal += 1;
            if status == TaskStatus::Failed {
                wf.failed += 1;
            } else {
                wf.skipped += 1;
            }
            changes.task(id, i);
            blocked.push(i);
        }
        let _ = self.flush(changes).await;
        if let Some(wf) = self.wfs.get(id) {
            if started_now {
                info!(workflow = %id, "workflow started");
                self.emit(id, events::WORKFLOW_STARTED, self.progress(wf));
            }
            for i in blocked {
                let ev = if wf.tasks[i].status == TaskStatus::Failed {
                    events::TASK_FAILED
                } else {
                    events::TASK_SKIPPED
                };
                self.task_event(wf, i, ev);
            }
        }
        self.check_finished(id).await;
        self.serve_leases().await;
    }

    // ---------------------------------------------------------------- leases and outcomes

    async fn lease(&mut self, env: Envelope) -> Option<Result<Value, GzError>> {
        let req: LeaseTasks = match env.payload_as() {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        // A request that waited here longer than the engine waits for the answer (the store
        // was unreachable) is not answered with tasks: the engine has given up on it.
        if self.clocks.age(&env.source, env.ts, now_millis()) > STALE_LEASE_MS {
            return None;
        }
        let now = Instant::now();
        for m in &req.served {
            self.method_seen.insert(m.clone(), now);
        }
        let wait = Duration::from_millis(req.wait_ms.min(30_000));
        // A new request from an engine supersedes its waiting one (its free slots changed).
        let mut superseded = Vec::new();
        self.leases.retain(|l| {
            let same = l.env.source == env.source;
            if same {
                superseded.push(l.env.clone());
            }
            !same
        });
        for old in superseded {
            let _ = self.client.respond(
                &old,
                Ok(json!({ "queue_manager_id": self.client.id(), "tasks": [] })),
            );
        }
        self.leases.push_back(Lease {
            env,
            slots: req.slots,
            deadline: Instant::now() + wait,
        });
        self.serve_leases().await;
        None
    }

    /// Answers waiting leases while ready tasks match their free slots.
    async fn serve_leases(&mut self) {
        let mut waiting = VecDeque::new();
        while let Some(mut lease) = self.leases.pop_front() {
            if self.queue.is_empty() {
                waiting.push_back(lease);
                continue;
            }
            let picked = self.take_for(&mut lease.slots);
            if picked.is_empty() {
                waiting.push_back(lease);
                continue;
            }
            let engine = lease.env.source.clone();
            let now = now_millis();
            let mut changes = Changes::default();
            let mut tasks = Vec::with_capacity(picked.len());
            for (w, i) in &picked {
                let Some(wf) = self.wfs.get_mut(w.as_ref()) else {
                    continue;
                };
                let t = &mut wf.tasks[*i];
                t.status = TaskStatus::Running;
                t.attempts += 1;
                t.started_at = Some(now);
                t.finished_at = None;
                wf.info[*i].engine = Some(engine.clone());
                changes.task(w, *i);
                tasks.push(ExecuteTask {
                    workflow_id: w.to_string(),
                    task_id: t.task_id.clone(),
                    attempt: t.attempts,
                    method: t.method.clone(),
                    params: t.params.clone().unwrap_or_else(|| json!({})),
                    timeout_ms: wf.info[*i].timeout_ms,
                    base_dir: wf.record.base_dir.clone(),
                });
            }
            if self.flush(changes).await.is_err() {
                // Not persisted: put the tasks back and answer nothing.
                for (w, i) in picked {
                    if let Some(wf) = self.wfs.get_mut(w.as_ref()) {
                        wf.tasks[i].status = TaskStatus::Queued;
                        wf.tasks[i].attempts = wf.tasks[i].attempts.saturating_sub(1);
                        self.queue
                            .enqueue(&wf.tasks[i].method, wf.info[i].priority, w.clone(), i);
                    }
                }
                waiting.push_back(lease);
                break;
            }
            for (w, i) in &picked {
                if let Some(wf) = self.wfs.get(w.as_ref()) {
                    self.task_event(wf, *i, events::TASK_STARTED);
                }
            }
            let reply = LeasedTasks {
                queue_manager_id: self.client.id().to_string(),
                tasks,
            };
            let _ = self.client.respond(
                &lease.env,
                serde_json::to_value(reply)
                    .map_err(|e| GzError::new(ErrorCode::Internal, e.to_string())),
            );
        }
        waiting.extend(self.leases.drain(..));
        self.leases = waiting;
    }

    /// Takes queued tasks that fit `slots` (highest priority first, FIFO within one).
    fn take_for(&mut self, slots: &mut BTreeMap<String, u32>) -> Vec<(Arc<str>, usize)> {
        let wfs = &self.wfs;
        self.queue
            .take(slots, |e| {
                wfs.get(e.wf.as_ref())
                    .is_some_and(|wf| wf.tasks[e.task].status == TaskStatus::Queued)
            })
            .into_iter()
            .map(|e| (e.wf, e.task))
            .collect()
    }

    async fn outcomes(&mut self, env: &Envelope) {
        let batch: TaskOutcomes = match env.payload_as() {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "bad task_outcomes payload");
                return;
            }
        };
        let now = now_millis();
        let mut changes = Changes::default();
        let mut finished: HashMap<String, Vec<FinishedTask>> = HashMap::new();
        let mut events_out: Vec<(String, usize, &'static str)> = Vec::new();
        let mut touched = HashSet::new();
        for o in batch.outcomes {
            let Some(wf) = self.wfs.get_mut(&o.workflow_id) else {
                continue;
            };
            let Some(&i) = wf.index.get(&o.task_id) else {
                continue;
            };
            if wf.info[i].engine.as_deref() != Some(env.source.as_str()) {
                // Only the engine holding the lease reports on a task (the hub stamps the
                // sender): anything else is forged or stale.
                warn!(workflow = %o.workflow_id, task = %o.task_id, from = %env.source, "outcome from a component that does not hold the task; ignored");
                continue;
            }
            let t = &mut wf.tasks[i];
            if t.status != TaskStatus::Running || t.attempts != o.attempt {
                continue; // late or duplicate: the recorded result stays as it is
            }
            t.provider_id = Some(o.provider_id.clone()).filter(|p| !p.is_empty());
            t.finished_at = Some(if o.finished_at > 0 {
                o.finished_at
            } else {
                now
            });
            touched.insert(o.workflow_id.clone());
            match (o.result, o.error) {
                (Some(result), None) => {
                    t.status = TaskStatus::Completed;
                    t.error = None;
                    t.result = Some(result.clone());
                    wf.completed += 1;
                    wf.terminal += 1;
                    finished
                        .entry(o.workflow_id.clone())
                        .or_default()
                        .push(FinishedTask {
                            task_id: o.task_id.clone(),
                            status: "completed".into(),
                            result: Some(result),
                        });
                    events_out.push((o.workflow_id.clone(), i, events::TASK_COMPLETED));
                }
                (_, error) => {
                    let error = error.unwrap_or_else(|| {
                        GzError::new(
                            ErrorCode::TaskFailed,
                            "provider sent neither result nor error",
                        )
                    });
                    t.error = serde_json::to_value(&error).ok();
                    // Work lost with its provider runs again without using up the retry policy, up to
                    // a bound, so a task that kills every provider it meets still ends.
                    let lost = error.is(ErrorCode::Disconnected)
                        && t.attempts < wf.info[i].retry.max_attempts + LOST_WORK_REQUEUES;
                    let worth_retrying = error.retryable || error.is(ErrorCode::PythonException);
                    if lost
                        || (worth_retrying && wf.info[i].retry.allows_another_attempt(t.attempts))
                    {
                        t.status = TaskStatus::Retrying;
                        let delay = if lost {
                            Duration::ZERO
                        } else {
                            wf.info[i]
                                .retry
                                .delay_for_attempt(t.attempts, rand::random::<f64>())
                        };
                        self.retries
                            .push((Instant::now() + delay, o.workflow_id.clone(), i));
                        events_out.push((o.workflow_id.clone(), i, events::TASK_RETRYING));
                    } else {
                        t.status = TaskStatus::Failed;
                        wf.failed += 1;
                        wf.terminal += 1;
                        finished
                            .entry(o.workflow_id.clone())
                            .or_default()
                            .push(FinishedTask {
                                task_id: o.task_id.clone(),
                                status: "failed".into(),
                                result: None,
                            });
                        events_out.push((o.workflow_id.clone(), i, events::TASK_FAILED));
                    }
                }
            }
            changes.task(&o.workflow_id, i);
        }
        if self.flush(changes).await.is_err() {
            return;
        }
        for (w, i, ev) in events_out {
            if let Some(wf) = self.wfs.get(&w) {
                self.task_event(wf, i, ev);
            }
        }
        for (w, list) in finished {
            self.tell_resolver(&w, list);
        }
        for w in touched {
            if let Some(wf) = self.wfs.get(&w) {
                self.emit(&w, events::WORKFLOW_PROGRESS, self.progress(wf));
            }
            self.check_finished(&w).await;
        }
    }

    /// Fails the queued tasks of methods that no engine has offered within the grace period
    /// (GZ2015): a workflow must not wait forever for a provider that does not exist.
    async fn fail_unserved(&mut self, now: Instant) {
        if now.duration_since(self.started) < self.provider_grace {
            return;
        }
        let unserved: Vec<String> = self
            .queue
            .methods()
            .into_iter()
            .filter(|m| {
                self.method_seen
                    .get(m)
                    .is_none_or(|t| now.duration_since(*t) > self.provider_grace)
            })
            .collect();
        for method in unserved {
            let entries = self.queue.drain(&method);
            let err = GzError::new(
                ErrorCode::NoProvider,
                format!("no provider serves {method}"),
            )
            .with_hint(format!(
                "start a provider for {method} (`gz status` lists what is registered)"
            ))
            .with_retryable(false);
            warn!(%method, tasks = entries.len(), "failing queued tasks: no provider serves the method");
            let mut changes = Changes::default();
            let mut finished: HashMap<String, Vec<FinishedTask>> = HashMap::new();
            let mut failed = Vec::new();
            for e in entries {
                let Some(wf) = self.wfs.get_mut(e.wf.as_ref()) else {
                    continue;
                };
                let t = &mut wf.tasks[e.task];
                if t.status != TaskStatus::Queued {
                    continue;
                }
                t.status = TaskStatus::Failed;
                t.error = serde_json::to_value(&err).ok();
                t.finished_at = Some(now_millis());
                wf.failed += 1;
                wf.terminal += 1;
                changes.task(&e.wf, e.task);
                finished
                    .entry(e.wf.to_string())
                    .or_default()
                    .push(FinishedTask {
                        task_id: t.task_id.clone(),
                        status: "failed".into(),
                        result: None,
                    });
                failed.push((e.wf.to_string(), e.task));
            }
            if self.flush(changes).await.is_err() {
                continue;
            }
            for (w, i) in &failed {
                if let Some(wf) = self.wfs.get(w) {
                    self.task_event(wf, *i, events::TASK_FAILED);
                }
            }
            for (w, list) in finished {
                self.tell_resolver(&w, list);
                self.check_finished(&w).await;
            }
        }
    }

    /// An engine left: the tasks it was running go back to the queue (their work may run
    /// again: at-least-once), without using up their retry policy.
    async fn engine_lost(&mut self, engine: &str) {
        // Its waiting lease requests must not be answered with tasks nobody will run.
        self.leases.retain(|l| l.env.source != engine);
        let requeued = self.requeue_running(engine, |_, _| true).await;
        if requeued > 0 {
            warn!(
                engine,
                tasks = requeued,
                "engine left with tasks in flight; they are queued again"
            );
        }
    }

    /// Something came from `engine`: its leases are extended.
    fn engine_heard(&mut self, engine: &str) {
        match self.engine_seen.get_mut(engine) {
            Some(seen) => *seen = Instant::now(),
            None => {
                self.engine_seen.insert(engine.to_string(), Instant::now());
            }
        }
    }

    /// Queues again the running tasks of engines silent for the lease timeout (registered
    /// but hung, or cut off without the hub noticing yet).
    async fn expire_leases(&mut self, now: Instant) {
        let mut holders: HashSet<String> = HashSet::new();
        for wf in self.wfs.values() {
            for (t, info) in wf.tasks.iter().zip(&wf.info) {
                if t.status == TaskStatus::Running {
                    if let Some(e) = &info.engine {
                        holders.insert(e.clone());
                    }
                }
            }
        }
        let timeout = self.lease_timeout;
        // Engines holding nothing need no lease; one never heard from starts its clock now.
        self.engine_seen
            .retain(|e, seen| holders.contains(e) || now.duration_since(*seen) < timeout);
        for engine in holders {
            let seen = *self.engine_seen.entry(engine.clone()).or_insert(now);
            if now.duration_since(seen) < timeout {
                continue;
            }
            self.engine_seen.remove(&engine);
            let requeued = self.requeue_running(&engine, |_, _| true).await;
            if requeued > 0 {
                warn!(
                    engine,
                    tasks = requeued,
                    silent_for = ?now.duration_since(seen),
                    "engine silent beyond the lease timeout; its tasks are queued again"
                );
            }
        }
    }

    /// An engine reported what it holds: its running tasks it did not list twice in a row
    /// were lost on the way (a lease reply or an outcome dropped) and are queued again.
    async fn engine_holds(&mut self, engine: &str, sent_at: u64, held: HeldTasks) {
        let held: HashSet<(String, String, u32)> = held
            .tasks
            .into_iter()
            .map(|t| (t.workflow_id, t.task_id, t.attempt))
            .collect();
        let requeued = self
            .requeue_running(engine, |t, info| {
                // Only attempts handed out well before the report was sent can be missing from it.
                if t.started_at.unwrap_or(u64::MAX).saturating_add(1_000) > sent_at {
                    return false;
                }
                if held.contains(&(t.workflow_id.clone(), t.task_id.clone(), t.attempts)) {
                    info.missed = 0;
                    false
                } else {
                    info.missed += 1;
                    info.missed >= 2
                }
            })
            .await;
        if requeued > 0 {
            warn!(
                engine,
                tasks = requeued,
                "tasks lost between engine and queue-manager; they are queued again"
            );
        }
    }

    /// Queues again the running tasks held by `engine` for which `lost` says so.
    async fn requeue_running(
        &mut self,
        engine: &str,
        mut lost: impl FnMut(&TaskRecord, &mut TaskInfo) -> bool,
    ) -> usize {
        let mut changes = Changes::default();
        let mut requeued = 0usize;
        for (id, wf) in self.wfs.iter_mut() {
            for i in 0..wf.tasks.len() {
                if wf.tasks[i].status != TaskStatus::Running
                    || wf.info[i].engine.as_deref() != Some(engine)
                {
                    continue;
                }
                if !lost(&wf.tasks[i], &mut wf.info[i]) {
                    continue;
                }
                wf.tasks[i].status = TaskStatus::Queued;
                wf.tasks[i].queued_at = Some(now_millis());
                wf.info[i].engine = None;
                wf.info[i].missed = 0;
                self.queue.enqueue(
                    &wf.tasks[i].method,
                    wf.info[i].priority,
                    Arc::from(id.as_str()),
                    i,
                );
                changes.task(id, i);
                requeued += 1;
            }
        }
        if requeued > 0 {
            let _ = self.flush(changes).await;
            self.serve_leases().await;
        }
        requeued
    }

    /// Renews ownership of every workflow in memory; one another queue-manager took over
    /// (this one was cut off for too long) is dropped here.
    fn renew_ownership(&mut self) {
        let owner = self.client.id().to_string();
        let ids: Vec<String> = self.wfs.keys().cloned().collect();
        for id in ids {
            match self.store.claim(&id, &owner, OWNER_TTL) {
                Ok(true) => {}
                Ok(false) => {
                    warn!(workflow = %id, "another queue-manager owns this workflow now; leaving it");
                    self.wfs.remove(&id);
                }
                Err(e) => warn!(workflow = %id, error = %e, "could not renew ownership"),
            }
        }
    }

    // ---------------------------------------------------------------- finishing

    async fn check_finished(&mut self, id: &str) {
        let Some(wf) = self.wfs.get_mut(id) else {
            return;
        };
        if wf.terminal < wf.tasks.len() || wf.record.status.is_terminal() {
            return;
        }
        let ok = (wf.failed == 0 && wf.skipped == 0) || wf.on_failure == OnFailure::Continue;
        wf.record.status = if ok {
            WorkflowStatus::Completed
        } else {
            WorkflowStatus::Failed
        };
        wf.record.finished_at = Some(now_millis());
        if !ok {
            let first = wf
                .tasks
                .iter()
                .find(|t| t.status == TaskStatus::Failed)
                .map(|t| t.task_id.clone());
            let err = GzError::new(
                ErrorCode::TaskFailed,
                format!(
                    "{} task(s) failed, {} skipped{}",
                    wf.failed,
                    wf.skipped,
                    first
                        .map(|f| format!(" (first failure: {f})"))
                        .unwrap_or_default()
                ),
            );
            wf.record.error = serde_json::to_value(err).ok();
        }
        let mut changes = Changes::default();
        changes.workflows.insert(id.to_string());
        let _ = self.flush(changes).await;
        self.finish_announce(id);
    }
    fn finish_announce(&mut self, id: &str) {
        let Some(wf) = self.wfs.remove(id) else {
            return;
        };
        if let Err(e) = self.store.release(id, self.client.id()) {
            warn!(workflow = %id, error = %e, "could not release ownership");
        }
        let finished_id = id.to_string();
        let mut payload = self.progress(&wf);
        payload["error"] = wf.record.error.clone().unwrap_or(Value::Null);
        if wf.tasks.len() <= RESULTS_IN_EVENT_LIMIT {
            let results: serde_json::Map<String, Value> = wf
                .tasks
                .iter()
                .filter_map(|t| t.result.clone().map(|r| (t.task_id.clone(), r)))
                .collect();
            payload["task_results"] = Value::Object(results);
        }
        let event = match wf.record.status {
            WorkflowStatus::Completed => events::WORKFLOW_COMPLETED,
            WorkflowStatus::Cancelled => events::WORKFLOW_CANCELLED,
            _ => events::WORKFLOW_FAILED,
        };
        info!(workflow = %id, status = %status_word(wf.record.status), completed = wf.completed, failed = wf.failed, skipped = wf.skipped, "workflow finished");
        self.emit(id, event, payload);
        self.events.borrow_mut().finished(&finished_id);
        if let Some(r) = &wf.resolver {
            let _ = self.client.emit(
                Target::Component(r.clone()),
                events::WORKFLOW_FORGET,
                json!({ "workflow_id": id }),
            );
        }
    }

    /// Cancels or fails a running workflow: unfinished tasks are cancelled, running work is
    /// stopped through the engines that hold it.
    async fn stop_workflow(&mut self, id: &str, status: WorkflowStatus, error: GzError) {
        let Some(wf) = self.wfs.get_mut(id) else {
            return;
        };
        let now = now_millis();
        let mut changes = Changes::default();
        let mut running: HashMap<String, Vec<TaskRef>> = HashMap::new();
        for (i, t) in wf.tasks.iter_mut().enumerate() {
            if t.status.is_terminal() {
                continue;
            }
            if t.status == TaskStatus::Running {
                if let Some(engine) = &wf.info[i].engine {
                    running.entry(engine.clone()).or_default().push(TaskRef {
                        workflow_id: id.to_string(),
                        task_id: t.task_id.clone(),
                    });
                }
            }
            t.status = TaskStatus::Cancelled;
            t.finished_at = Some(now);
            t.error =
                serde_json::to_value(GzError::new(ErrorCode::Cancelled, error.message.clone()))
                    .ok();
            wf.terminal += 1;
            changes.task(id, i);
        }
        wf.record.status = status;
        wf.record.finished_at = Some(now);
        wf.record.error = serde_json::to_value(&error).ok();
        changes.workflows.insert(id.to_string());
        let _ = self.flush(changes).await;
        for (engine, tasks) in running {
            let payload = serde_json::to_value(CancelTasks { tasks }).unwrap_or(Value::Null);
            let _ = self
                .client
                .emit(Target::Component(engine), events::CANCEL_TASKS, payload);
        }
        self.finish_announce(id);
    }

    /// Cancels a workflow; `Ok(None)` when the request went on to the owner.
    async fn cancel(&mut self, env: &Envelope) -> Result<Option<Value>, GzError> {
        let r: WorkflowRef = env.payload_as()?;
        self.check_access(env, &r.workflow_id, Access::Cancel)
            .await?;
        if self.wfs.contains_key(&r.workflow_id) {
            let err = GzError::new(
                ErrorCode::Cancelled,
                format!("workflow {} cancelled by request", r.workflow_id),
            );
            self.stop_workflow(&r.workflow_id, WorkflowStatus::Cancelled, err)
                .await;
            return Ok(Some(
                json!({ "workflow_id": r.workflow_id, "cancelled": true, "status": "cancelled" }),
            ));
        }
        let id = r.workflow_id.clone();
        match self.blocking(move |s| s.workflow(&id)).await? {
            Some(w) if !w.status.is_terminal() && self.forward_to_owner(env) => Ok(None),
            Some(w) => Ok(Some(
                json!({ "workflow_id": w.id, "cancelled": false, "status": status_word(w.status) }),
            )),
            None => Err(GzError::new(
                ErrorCode::WorkflowNotFound,
                format!("no workflow {}", r.workflow_id),
            )),
        }
    }

    // ---------------------------------------------------------------- queries

    /// A request about a workflow another queue-manager owns goes to the owner, whose
    /// answer is relayed; true when forwarded (the reply is then sent from here later).
    fn forward_to_owner(&self, env: &Envelope) -> bool {
        let Some(id) = env.payload.get("workflow_id").and_then(Value::as_str) else {
            return false;
        };
        let owner = match self.store.owner(id) {
            Ok(Some(o)) if o != self.client.id() => o,
            _ => return false,
        };
        let (client, env) = (self.client.clone(), env.clone());
        tokio::spawn(async move {
            let result = client
                .request_with_timeout(
                    Target::Component(owner),
                    &env.event,
                    env.payload.clone(),
                    Duration::from_secs(30),
                )
                .await;
            let _ = client.respond(&env, result);
        });
        true
    }

    /// Events after a sequence number; `Ok(None)` when the request went on to the owner.
    async fn events_since(&self, env: &Envelope) -> Result<Option<Value>, GzError> {
        let id = env
            .payload
            .get("workflow_id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                GzError::new(
                    ErrorCode::InvalidPayload,
                    "workflow_events needs workflow_id",
                )
            })?;
        let after = env
            .payload
            .get("after_seq")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        self.check_access(env, id, Access::Read).await?;
        if self.events.borrow().since(id, 0).is_none() && self.forward_to_owner(env) {
            return Ok(None);
        }
        match self.events.borrow().since(id, after) {
            Some((events, complete)) => Ok(Some(
                json!({ "workflow_id": id, "events": events, "complete": complete }),
            )),
            None => Ok(Some(
                json!({ "workflow_id": id, "events": [], "complete": false }),
            )),
        }
    }

    async fn get(&mut self, env: &Envelope) -> Result<Value, GzError> {
        let r: WorkflowRef = env.payload_as()?;
        self.check_access(env, &r.workflow_id, Access::Read).await?;
        if let Some(wf) = self.wfs.get(&r.workflow_id) {
            let tasks = if r.summary {
                Vec::new()
            } else {
                wf.tasks.clone()
            };
            return Ok(
                json!({ "workflow": record_without_spec(&wf.record), "counts": counts(&wf.tasks), "tasks": tasks }),
            );
        }
        let id = r.workflow_id.clone();
        let found = self
            .blocking(move |s| Ok(s.workflow(&id)?.map(|w| (w, s.tasks(&id)))))
            .await?;
        let Some((record, tasks)) = found else {
            return Err(GzError::new(
                ErrorCode::WorkflowNotFound,
                format!("no workflow {}", r.workflow_id),
            ));
        };
        let tasks = tasks.map_err(gz)?;
        let counts = counts(&tasks);
        let tasks = if r.summary { Vec::new() } else { tasks };
        Ok(json!({ "workflow": record_without_spec(&record), "counts": counts, "tasks": tasks }))
    }

    async fn list(&mut self, env: &Envelope) -> Result<Value, GzError> {
        let q: ListWorkflows = env.payload_as()?;
        let status = match q.status.as_deref() {
            Some(s) => Some(s.parse::<WorkflowStatus>().map_err(|_| {
                GzError::new(ErrorCode::InvalidField, format!("unknown status {s:?}"))
            })?),
            None => None,
        };
        let limit = q.limit.unwrap_or(20).clamp(1, 10_000);
        let own_only = env
            .auth
            .as_ref()
            .filter(|a| !sees_all(a))
            .map(|a| a.user.clone());
        // A user sees only their own workflows: read more and keep theirs.
        let fetch = if own_only.is_some() { 10_000 } else { limit };
        let mut list = self
            .blocking(move |s| s.list_workflows(fetch, status))
            .await?;
        if let Some(user) = own_only {
            list.retain(|w| w.owner.as_deref() == Some(user.as_str()));
            list.truncate(limit);
        }
        Ok(json!(list))
    }

    /// `workflow_owner` (asked by the hub): who submitted a workflow.
    async fn owner_query(&self, env: &Envelope) -> Result<Value, GzError> {
        let r: WorkflowRef = env.payload_as()?;
        let owner = self.owner_of(&r.workflow_id).await?;
        Ok(json!({ "workflow_id": r.workflow_id, "owner": owner.flatten() }))
    }

    /// The owner of a workflow: `None` when there is no such workflow, `Some(None)` when
    /// it has no owner (stored before identities existed).
    async fn owner_of(&self, id: &str) -> Result<Option<Option<String>>, GzError> {
        if let Some(wf) = self.wfs.get(id) {
            return Ok(Some(wf.record.owner.clone()));
        }
        let id = id.to_string();
        let record = self.blocking(move |s| s.workflow(&id)).await?;
        Ok(record.map(|w| w.owner))
    }

    /// Refuses (GZ4003) a request about a workflow that its sender may not read or cancel.
    /// Unknown workflows pass (the handler answers "not found").
    async fn check_access(&self, env: &Envelope, id: &str, access: Access) -> Result<(), GzError> {
        let Some(who) = &env.auth else {
            return Ok(());
        };
        if who.role == gleitzeit_protocol::Role::Service
            || (who.reads_all_workflows() && (access == Access::Read || who.may_cancel(None)))
        {
            return Ok(());
        }
        let Some(owner) = self.owner_of(id).await? else {
            return Ok(());
        };
        let allowed = match access {
            Access::Read => who.may_read(owner.as_deref()),
            Access::Cancel => who.may_cancel(owner.as_deref()),
        };
        if allowed {
            Ok(())
        } else {
            Err(GzError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "{} ({}) may not {} workflow {id}",
                    who.user,
                    who.role,
                    access.verb()
                ),
            ))
        }
    }

    async fn task_get(&mut self, env: &Envelope) -> Result<Value, GzError> {
        let q: TaskLookup = env.payload_as()?;
        if let Some(w) = &q.workflow_id {
            if let Some(wf) = self.wfs.get(w) {
                if let Some(&i) = wf.index.get(&q.task_id) {
                    self.check_access(env, w, Access::Read).await?;
                    return Ok(json!(wf.tasks[i]));
                }
            }
        }
        let (w, t) = (q.workflow_id.clone(), q.task_id.clone());
        match self.blocking(move |s| s.task(w.as_deref(), &t)).await? {
            Some(t) => {
                self.check_access(env, &t.workflow_id, Access::Read).await?;
                Ok(json!(t))
            }
            None => Err(GzError::new(
                ErrorCode::TaskNotFound,
                format!("no task {}", q.task_id),
            )),
        }
    }

    // ---------------------------------------------------------------- recovery

    /// Loads unfinished workflows: queued and running tasks go back to the queue (their work
    /// may run again: at-least-once), and each workflow is planned again.
    pub(crate) async fn recover(&mut self) -> Result<(), StoreError> {
        // Unfinished workflows nobody else owns (their owner, if any, stopped renewing).
        let owner = self.client.id().to_string();
        let mut loaded = Vec::new();
        for id in self.store.unfinished_ids()? {
            if self.wfs.contains_key(&id) || !self.store.claim(&id, &owner, OWNER_TTL)? {
                continue;
            }
            if let Some(w) = self.store.workflow(&id)? {
                let tasks = self.store.tasks(&id)?;
                loaded.push((w, tasks));
            }
        }
        for (mut record, mut tasks) in loaded {
            let spec_json = std::mem::take(&mut record.spec);
            let spec: WorkflowSpec = match serde_json::from_value(spec_json.clone()) {
                Ok(s) => s,
                Err(e) => {
                    warn!(workflow = %record.id, error = %e, "stored spec unreadable; skipping");
                    continue;
                }
            };
            let id = record.id.clone();
            for t in tasks.iter_mut() {
                if matches!(t.status, TaskStatus::Running | TaskStatus::Retrying) {
                    t.status = TaskStatus::Queued;
                }
            }
            let mut wf = self.build_wf(record, &spec, tasks);
            let key: Arc<str> = Arc::from(id.as_str());
            for (i, t) in wf.tasks.iter().enumerate() {
                match t.status {
                    TaskStatus::Queued => {
                        self.queue.enqueue(
                            &wf.tasks[i].method,
                            wf.info[i].priority,
                            key.clone(),
                            i,
                        );
                    }
                    TaskStatus::Completed => wf.completed += 1,
                    TaskStatus::Failed => wf.failed += 1,
                    TaskStatus::Skipped => wf.skipped += 1,
                    _ => {}
                }
            }
            wf.terminal = wf.tasks.iter().filter(|t| t.status.is_terminal()).count();
            info!(workflow = %id, "taking over an unfinished workflow");
            self.events.borrow_mut().open(&id, now_millis() * 1000);
            self.wfs.insert(id.clone(), wf);
            self.plan(&id, Some(spec_json));
        }
        Ok(())
    }
}
