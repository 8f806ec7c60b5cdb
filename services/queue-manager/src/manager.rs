//! The queue-manager's state machine. One task owns it (no locks); slow calls (the store,
//! the resolver) either run on blocking threads and are awaited, or are spawned and report
//! back through [`Internal`] messages. Handing out work and taking results back live in
//! `dispatch.rs`, finishing workflows in `finishing.rs`, planning in `planning.rs`, recovery in `recovery.rs`, and the size limits
//! of submissions in `admission.rs`.

mod admission;
mod dispatch;
mod finishing;
mod planning;
mod recovery;

pub use admission::WorkflowLimits;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::limits::deadline_after;
use gleitzeit_protocol::payloads::{
    HeldTasks, LeasedTasks, ListWorkflows, Resolution, SubmitWorkflow, TaskLookup, WorkflowRef,
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

impl TaskInfo {
    fn new(spec: &gleitzeit_workflow::TaskSpec) -> Self {
        TaskInfo {
            priority: spec.priority.level(),
            retry: spec.retry.clone(),
            timeout_ms: spec.timeout_millis(),
            engine: None,
            missed: 0,
        }
    }
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
    /// Resolver requests that failed since the last answer (for the re-plan pause).
    plan_failures: u32,
    /// A re-plan is scheduled already.
    replan_pending: bool,
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
    /// How large a submitted workflow may be.
    limits: WorkflowLimits,
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
        limits: WorkflowLimits,
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
            limits,
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
            } => {
                if let Some(wf) = self.wfs.get_mut(&workflow_id) {
                    wf.plan_failures = 0;
                }
                self.apply_resolution(&workflow_id, res).await
            }
            Internal::Resolution {
                workflow_id,
                result: Err(e),
            } => self.plan_failed(&workflow_id, e).await,
            Internal::Replan { workflow_id } => self.replan(&workflow_id),
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
        // Checked on the envelope's own payload, before anything copies a huge spec.
        if let Some(spec) = env.payload.get("spec") {
            self.limits.check_raw(spec)?;
        }
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
        self.limits.check_bytes(&spec_json)?;
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
        let info = spec.tasks.iter().map(TaskInfo::new).collect();
        let index = tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.task_id.clone(), i))
            .collect();
        // Out-of-range timeouts never get here (validation and recovery refuse them); a
        // deadline that cannot be represented is none at all.
        let deadline = spec
            .timeout_duration()
            .and_then(|d| deadline_after(Instant::now(), d));
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
            plan_failures: 0,
            replan_pending: false,
        }
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
}
