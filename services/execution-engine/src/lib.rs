//! Gleitzeit execution-engine: takes ready tasks from the queue-manager and runs them on
//! providers.
//!
//! It keeps a table of providers (from the hub's registry and the `components` room) with
//! their methods and capacity, asks the queue-manager for as many tasks as there are free
//! slots (`lease_tasks`, long poll), sends each batch to the provider with the most free
//! slots for the method, forwards outcomes to the queue-manager (those that finished
//! meanwhile together: `outgoing.rs`; while tasks are out, its next lease request waits up
//! 5 ms to go with them, one message instead of two: `rearm.rs`), stops cancelled work,
//! fails the in-flight tasks of a provider that disappears (retryable, so they run again),
//! and backs up provider-side timeouts with a watchdog (those two: `losses.rs`).
//!
//! Consumes: [`EngineRequest`] (its `EVENTS`: outcomes and held reports of providers,
//! `cancel_tasks` from the queue-manager, the hub's news of components), plus `ping`,
//! `shutdown` and `metrics` (every component; its figures are gauges of what it holds).
//! Emits: `lease_tasks`, `execute_tasks`, `cancel_tasks` (to providers), `task_outcomes`
//! (to the queue-manager).

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gleitzeit_component::{run_component, Component, Events, Every, HELD_REPORT_INTERVAL};
use gleitzeit_hub_client::{connect_component, registration, ClientConfig, ClientError, HubClient};
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types, rooms};
use gleitzeit_protocol::limits::{cap_outcome_measured, MAX_OUTCOME_BYTES};
use gleitzeit_protocol::metrics::MetricFamily;
use gleitzeit_protocol::payloads::{
    CancelTasks, ComponentInfo, ExecuteTask, ExecuteTasks, LeasedTasks, TaskOutcome, TaskOutcomes,
    TaskRef,
};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::requests::EngineRequest;
use gleitzeit_protocol::{routing, Envelope, Target};
use gleitzeit_runtime::Shutdown;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

mod leasing;
mod losses;
mod outgoing;
mod pace;
mod rearm;
mod served;

use leasing::LeaseRequest;
use losses::watchdog_deadline;
use pace::Pace;
use rearm::Rearm;

/// The most tasks sent to a provider per unit of its capacity (`--prefetch`): trivial
/// tasks get this many, slower ones fewer (`pace.rs`). 32 kept two Python workers busier
/// than 16 once the round trip to the queue-manager carried no task events nobody watched
/// (`docs/performance.md`, "A deeper prefetch for trivial tasks").
pub const DEFAULT_PREFETCH: u32 = 32;

/// Settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hub URL.
    pub hub_url: String,
    /// Component id (default `execution-engine-<random>`).
    pub component_id: Option<String>,
    /// The most tasks sent to a provider, as a multiple of its capacity (those beyond it
    /// wait in the provider's own queue, which hides the round trip to the queue-manager);
    /// the engine sends as many as cover ~25 ms of the provider's work (`pace.rs`).
    pub prefetch: u32,
    /// The API key to present (`None`: from the environment, the saved login or the local
    /// suite's key; see `gleitzeit_runtime::credentials`).
    pub api_key: Option<String>,
}

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The hub connection failed for good.
    #[error(transparent)]
    Hub(#[from] ClientError),
}

struct Provider {
    methods: Vec<Arc<str>>,
    capacity: u32,
    in_flight: u32,
    /// How long its tasks take, which sets how many are sent ahead (`pace.rs`).
    pace: Pace,
}

impl Provider {
    /// The tasks it may hold: its capacity × its depth (at most `prefetch`, `pace.rs`).
    fn room(&self, prefetch: u32) -> u32 {
        self.capacity.saturating_mul(self.pace.depth(prefetch))
    }
}

struct Dispatched {
    provider: String,
    queue_manager: String,
    attempt: u32,
    deadline: Option<Instant>,
    /// Consecutive provider reports that did not list this attempt.
    missed: u32,
}

enum Internal {
    Leased(String, u64, Result<LeasedTasks, GzError>),
    Providers(Vec<ComponentInfo>),
}

/// A `task_outcomes` payload with the engine's next lease request (`TaskOutcomes::lease`),
/// written from the shared method names.
#[derive(serde::Serialize)]
struct OutcomesAndLease<'a> {
    outcomes: &'a [TaskOutcome],
    lease: LeaseRequest<'a>,
}

struct Engine {
    client: HubClient,
    tx: mpsc::UnboundedSender<Internal>,
    prefetch: u32,
    providers: HashMap<String, Provider>,
    dispatched: HashMap<TaskRef, Dispatched>,
    /// The lease request in flight per queue-manager (`leasing.rs`). A new request
    /// supersedes it when more slots free up; the queue-manager then answers the old one.
    lease: HashMap<String, leasing::Asked>,
    /// Changes whenever the provider table does (a lease request remembers it).
    providers_version: u64,
    /// Registered queue-managers (each is asked for tasks; empty: ask the type).
    queue_manager_ids: Vec<String>,
    lease_seq: u64,
    /// Queue-managers tasks came from, with when they last had one here (each gets
    /// `tasks_held` reports while it does, and for a minute after).
    queue_managers: HashMap<String, Instant>,
    /// When `tasks_held` reports are due.
    report_every: Every,
    /// When the provider table is asked for again.
    refresh_every: Every,
    /// Outcomes to forward, sent together when the loop is idle (`outgoing.rs`).
    outgoing: outgoing::Outgoing,
    /// What each queue-manager last heard of the methods served here (`served.rs`).
    served: served::ServedNews,
    /// Lease requests waiting to go with outcomes (`rearm.rs`).
    rearm: Rearm,
}

/// Connects to the hub, registers, and runs tasks until `shutdown`.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ServiceError> {
    let ty = component_types::EXECUTION_ENGINE;
    let id = config
        .component_id
        .unwrap_or_else(|| gleitzeit_runtime::default_component_id(ty));
    let reg = registration(
        ty,
        id,
        vec!["task_execution".into()],
        0,
        json!({ "prefetch": config.prefetch }),
    );
    let Some((client, incoming)) = connect_component(
        ClientConfig::component(config.hub_url, reg)
            .with_optional_api_key(config.api_key.as_deref()),
        &shutdown,
    )
    .await?
    else {
        return Ok(());
    };
    if let Err(e) = client.subscribe(&[rooms::COMPONENTS.to_string()]).await {
        warn!(error = %e, "could not join the components room; relying on polling");
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut engine = Engine {
        client: client.clone(),
        tx,
        prefetch: config.prefetch.max(1),
        providers: HashMap::new(),
        dispatched: HashMap::new(),
        lease: HashMap::new(),
        providers_version: 0,
        queue_manager_ids: Vec::new(),
        lease_seq: 0,
        queue_managers: HashMap::new(),
        report_every: Every::new(HELD_REPORT_INTERVAL),
        refresh_every: Every::new(Duration::from_secs(2)),
        outgoing: outgoing::Outgoing::default(),
        served: served::ServedNews::default(),
        rearm: Rearm::default(),
    };
    engine.refresh_providers();
    let events = Events::new(client.clone(), incoming)
        .internal(rx)
        .tick(Duration::from_millis(100));
    run_component(&mut engine, events, &shutdown).await;
    engine.send_outgoing();
    client.close().await;
    Ok(())
}

/// Every event may free slots or bring providers: each ends with a lease request if due.
impl Component for Engine {
    type Internal = Internal;

    async fn on_envelope(&mut self, env: Envelope) {
        self.handle_envelope(env);
        // With outcomes waiting to go out, the lease request follows them (`on_idle`): the
        // queue-manager learns of freed slots after the results that freed them.
        if self.outgoing.is_empty() {
            self.maybe_lease();
        }
    }

    async fn on_internal(&mut self, msg: Internal) {
        self.handle_internal(msg);
        self.maybe_lease();
    }

    async fn on_idle(&mut self) {
        if !self.outgoing.is_empty() {
            self.send_outgoing();
            self.maybe_lease();
        } else if self.rearm.any_due(Instant::now()) {
            // Requests that waited long enough go alone now; one that found nothing to ask
            // for (no free slot) or no one to ask is dropped (`rearm.rs`).
            self.maybe_lease();
            self.rearm.drop_due(Instant::now());
        }
    }

    fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        self.rearm.next_due().map(tokio::time::Instant::from_std)
    }

    async fn on_tick(&mut self) {
        self.send_outgoing();
        self.watchdog();
        if self.report_every.due() {
            self.report_held();
        }
        if self.refresh_every.due() {
            self.refresh_providers();
        }
        self.maybe_lease();
    }

    fn metrics(&self) -> Vec<MetricFamily> {
        let in_flight: u32 = self.providers.values().map(|p| p.in_flight).sum();
        let room: u32 = self.providers.values().map(|p| p.room(self.prefetch)).sum();
        vec![
            MetricFamily::gauge(
                "gleitzeit_engine_tasks_dispatched",
                "Task attempts sent to providers and not yet answered with an outcome.",
            )
            .with(&[], self.dispatched.len() as f64),
            MetricFamily::gauge(
                "gleitzeit_engine_providers",
                "Providers the engine dispatches to.",
            )
            .with(&[], self.providers.len() as f64),
            MetricFamily::gauge(
                "gleitzeit_engine_provider_slots",
                "Tasks the engine may have at its providers (capacity × depth, at most × prefetch) and has there now.",
            )
            .with(&[("state", "used")], f64::from(in_flight))
            .with(&[("state", "total")], f64::from(room)),
        ]
    }
}

impl Engine {
    fn refresh_providers(&self) {
        let client = self.client.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            match client
                .request_with_timeout(
                    Target::Hub,
                    events::LIST_COMPONENTS,
                    Value::Null,
                    Duration::from_secs(5),
                )
                .await
                .and_then(|v| {
                    serde_json::from_value(v)
                        .map_err(|e| GzError::new(ErrorCode::InvalidPayload, e.to_string()))
                }) {
                Ok(list) => {
                    let _ = tx.send(Internal::Providers(list));
                }
                Err(e) => debug!(error = %e, "component list unavailable"),
            }
        });
    }

    fn handle_envelope(&mut self, mut env: Envelope) {
        let request = match EngineRequest::decode_envelope(&mut env) {
            Ok(request) => request,
            Err(e) if e.is(ErrorCode::UnknownEvent) => {
                let _ = self.client.respond(&env, Err(e));
                return;
            }
            Err(e) => {
                // Reports are not answered: a malformed one is logged and dropped.
                warn!(error = %e, from = %env.source, "bad payload");
                return;
            }
        };
        match request {
            EngineRequest::Outcomes(batch) => self.forward_from(&env.source, batch.outcomes),
            EngineRequest::Held(held) => self.provider_holds(&env.source, held),
            EngineRequest::Cancel(c) => self.cancel(c.tasks),
            EngineRequest::ComponentJoined => self.refresh_providers(),
            EngineRequest::ComponentLeft(_) if !env.auth.as_ref().is_some_and(|a| a.is_hub()) => {
                // Only the hub says who left (a forged departure would run tasks twice).
                warn!(from = %env.source, "component_left not from the hub; ignored");
            }
            EngineRequest::ComponentLeft(left) => {
                self.provider_lost(&left.component_id);
                // A lease request held by a queue-manager that left will never be answered.
                if left.component_type == component_types::QUEUE_MANAGER {
                    self.lease.remove(&left.component_id);
                    self.rearm.forget(&left.component_id);
                    self.served.forget(&left.component_id);
                    self.queue_manager_ids.retain(|q| *q != left.component_id);
                    self.lease.remove("");
                }
            }
            EngineRequest::Ignored => {}
        }
    }

    fn handle_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Providers(list) => {
                self.providers_version += 1;
                let mut seen = Vec::new();
                let queue_managers = list
                    .iter()
                    .filter(|c| c.registration.component_type == component_types::QUEUE_MANAGER);
                self.queue_manager_ids = queue_managers
                    .clone()
                    .map(|c| c.registration.component_id.clone())
                    .collect();
                self.rearm.set_takers(
                    queue_managers
                        .filter(|c| {
                            c.registration
                                .capabilities
                                .iter()
                                .any(|cap| cap == rearm::LEASE_WITH_OUTCOMES)
                        })
                        .map(|c| c.registration.component_id.clone())
                        .collect(),
                );
                for c in list {
                    let r = c.registration;
                    if r.capacity == 0 || r.capabilities.iter().all(|m| !m.contains('/')) {
                        continue;
                    }
                    seen.push(r.component_id.clone());
                    let p = self.providers.entry(r.component_id).or_insert(Provider {
                        methods: Vec::new(),
                        capacity: 0,
                        in_flight: 0,
                        pace: Pace::default(),
                    });
                    p.methods = r.capabilities.into_iter().map(Arc::from).collect();
                    p.capacity = r.capacity;
                }
                let gone: Vec<String> = self
                    .providers
                    .keys()
                    .filter(|k| !seen.contains(k))
                    .cloned()
                    .collect();
                for g in gone {
                    self.provider_lost(&g);
                }
            }
            Internal::Leased(target, seq, result) => {
                if self.lease.get(&target).is_some_and(|a| a.seq == seq) {
                    self.lease.remove(&target);
                }
                if result.is_err() {
                    // It may not have heard the methods: the next request repeats them.
                    self.served.forget(&target);
                }
                match result {
                    Ok(leased) => self.dispatch(leased),
                    Err(e) if e.is(ErrorCode::NoRoute) => debug!("no queue-manager yet"),
                    Err(e) => warn!(error = %e, "lease failed"),
                }
            }
        }
    }

    /// Asks every queue-manager for tasks when there are free slots and no request to it
    /// asks for them already (each may own different workflows).
    fn maybe_lease(&mut self) {
        let version = self.providers_version;
        let covered = |lease: &HashMap<String, leasing::Asked>, target: &str| {
            lease
                .get(target)
                .is_some_and(|a| a.still_covers(&self.providers, self.prefetch, version))
        };
        // Every request in flight still asks for all that is free: nothing to sum.
        let everywhere = if self.queue_manager_ids.is_empty() {
            covered(&self.lease, "")
        } else {
            self.queue_manager_ids
                .iter()
                .all(|q| covered(&self.lease, q))
        };
        if everywhere {
            return;
        }
        let slots = leasing::free_slots(&self.providers, self.prefetch);
        if slots.is_empty() {
            return;
        }
        let targets: Vec<String> = if self.queue_manager_ids.is_empty() {
            vec![String::new()]
        } else {
            self.queue_manager_ids.clone()
        };
        for target in targets {
            // Only a request for many more slots than the one in flight supersedes it.
            if let Some(asked) = self.lease.get_mut(&target) {
                if asked.suffices(&slots) {
                    asked.rebase(&self.providers, self.prefetch, version);
                    continue;
                }
            }
            if self.waits_for_outcomes(&target) {
                continue;
            }
            self.send_lease(target, &slots, None);
        }
    }

    /// Whether the next lease request to queue-manager `target` waits to go with the
    /// outcomes of the tasks out now (`rearm.rs`).
    fn waits_for_outcomes(&mut self, target: &str) -> bool {
        let tasks_out = !self.dispatched.is_empty();
        self.rearm.waits(target, tasks_out, Instant::now())
    }

    /// Sends a lease request for `slots` to `target`, alone or with `outcomes` for it.
    fn send_lease(
        &mut self,
        target: String,
        slots: &leasing::Slots,
        outcomes: Option<&[TaskOutcome]>,
    ) {
        self.rearm.forget(&target);
        let version = self.providers_version;
        self.lease_seq += 1;
        let seq = self.lease_seq;
        let asked =
            leasing::Asked::new(seq, slots.clone(), &self.providers, self.prefetch, version);
        self.lease.insert(target.clone(), asked);
        let served =
            self.served
                .for_request(&target, slots.keys().cloned().collect(), Instant::now());
        // Written straight from the shared method names (a `LeaseTasks` as JSON).
        let lease = LeaseRequest {
            slots,
            wait_ms: 1000,
            served: &served,
        };
        let to = if target.is_empty() {
            Target::Type(component_types::QUEUE_MANAGER.into())
        } else {
            Target::Component(target.clone())
        };
        let envelope = match outcomes {
            None => Envelope::with_text(
                to,
                events::LEASE_TASKS,
                JsonText::of(&lease).unwrap_or_default(),
            ),
            Some(outcomes) => Envelope::with_text(
                to,
                events::TASK_OUTCOMES,
                JsonText::of(&OutcomesAndLease { outcomes, lease }).unwrap_or_default(),
            ),
        };
        // Sent now, in order after the outcomes that freed the slots; only the wait is
        // spawned.
        let pending = self.client.send_request(envelope);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            // Read straight from the reply's text into the leased tasks.
            let request = async move {
                pending?
                    .reply_as::<LeasedTasks>(Duration::from_secs(10))
                    .await
            };
            let result = gleitzeit_runtime::catch_panic(request)
                .await
                .unwrap_or_else(|panic| {
                    Err(GzError::new(
                        ErrorCode::Internal,
                        format!("lease request panicked: {panic}"),
                    ))
                });
            if result.is_err() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = tx.send(Internal::Leased(target, seq, result));
        });
    }

    fn pick_provider(&self, method: &str) -> Option<String> {
        self.providers
            .iter()
            .filter(|(_, p)| p.methods.iter().any(|m| &**m == method))
            .max_by_key(|(id, p)| {
                (
                    i64::from(p.room(self.prefetch)) - i64::from(p.in_flight),
                    std::cmp::Reverse((*id).clone()),
                )
            })
            .map(|(id, _)| id.clone())
    }
    fn dispatch(&mut self, leased: LeasedTasks) {
        self.queue_managers
            .insert(leased.queue_manager_id.clone(), Instant::now());
        let mut batches: HashMap<String, Vec<ExecuteTask>> = HashMap::new();
        let mut unserved = Vec::new();
        for task in leased.tasks {
            let key = TaskRef {
                workflow_id: task.workflow_id.clone(),
                task_id: task.task_id.clone(),
            };
            match self.pick_provider(&routing::route_key(&task.method, &task.params)) {
                Some(pid) => {
                    // At most `depth` tasks per slot are ahead of this one at the provider.
                    let mut depth = self.prefetch;
                    if let Some(p) = self.providers.get_mut(&pid) {
                        p.in_flight += 1;
                        depth = p.pace.depth(self.prefetch);
                    }
                    let deadline = task
                        .timeout_ms
                        .and_then(|ms| watchdog_deadline(Instant::now(), ms, depth));
                    let older = self.dispatched.insert(
                        key,
                        Dispatched {
                            provider: pid.clone(),
                            queue_manager: leased.queue_manager_id.clone(),
                            attempt: task.attempt,
                            deadline,
                            missed: 0,
                        },
                    );
                    // A newer attempt replaces an older one still out: the older one's
                    // outcome will be dropped, so its slot is given back now.
                    if let Some(older) = older {
                        if let Some(p) = self.providers.get_mut(&older.provider) {
                            p.in_flight = p.in_flight.saturating_sub(1);
                        }
                    }
                    batches.entry(pid).or_default().push(task);
                }
                // The provider it was leased for left meanwhile: hand the task back (it is
                // queued again without using up its retries; the queue-manager fails tasks of
                // methods nobody serves after its grace period).
                None => unserved.push(outcome_err(
                    &task.workflow_id,
                    &task.task_id,
                    task.attempt,
                    GzError::new(
                        ErrorCode::Disconnected,
                        format!(
                            "no provider for {} right now",
                            routing::describe(&routing::route_key(&task.method, &task.params))
                        ),
                    ),
                )),
            }
        }
        for (pid, tasks) in batches {
            debug!(provider = %pid, count = tasks.len(), "dispatching");
            // Written straight to text (a tree of values first was a tenth of the engine).
            let payload = JsonText::of(&ExecuteTasks { tasks }).unwrap_or_default();
            let envelope =
                Envelope::with_text(Target::Component(pid), events::EXECUTE_TASKS, payload);
            if let Err(e) = self.client.send(envelope) {
                warn!(error = %e, "could not dispatch");
            }
        }
        if !unserved.is_empty() {
            self.send_outcomes(&leased.queue_manager_id, unserved);
        }
    }

    /// Outcomes sent by a provider: only those of attempts dispatched to that provider
    /// count (the hub stamps the sender; others are forged or stale).
    fn forward_from(&mut self, provider: &str, mut outcomes: Vec<TaskOutcome>) {
        outcomes.retain(|o| {
            let key = TaskRef {
                workflow_id: o.workflow_id.clone(),
                task_id: o.task_id.clone(),
            };
            let ours = self
                .dispatched
                .get(&key)
                .is_none_or(|d| d.provider == provider);
            if !ours {
                warn!(task = %o.task_id, from = %provider, "outcome from a provider that does not hold the task; ignored");
            }
            ours
        });
        self.forward(outcomes);
    }

    /// Outcomes from providers (or made here) go to the queue-manager that owns the task;
    /// a result or error larger than [`MAX_OUTCOME_BYTES`] becomes a GZ2026 failure with a
    /// truncated preview (a provider that did not cap it must not break the hub's limit).
    fn forward(&mut self, outcomes: Vec<TaskOutcome>) {
        for o in outcomes {
            let (o, bytes) = cap_outcome_measured(o, MAX_OUTCOME_BYTES);
            let key = TaskRef {
                workflow_id: o.workflow_id.clone(),
                task_id: o.task_id.clone(),
            };
            let Some(d) = self.dispatched.get(&key) else {
                debug!(task = %o.task_id, "outcome for a task this engine no longer tracks");
                continue;
            };
            if d.attempt != o.attempt {
                continue;
            }
            let Some(d) = self.dispatched.remove(&key) else {
                continue;
            };
            if let Some(p) = self.providers.get_mut(&d.provider) {
                p.in_flight = p.in_flight.saturating_sub(1);
                // Outcomes made here (a lost provider, the watchdog) carry no run time.
                if o.started_at > 0 && o.finished_at >= o.started_at {
                    p.pace.record(o.finished_at - o.started_at);
                }
            }
            if let Some(full) = self.outgoing.push(&d.queue_manager, o, bytes) {
                self.send_outcomes(&d.queue_manager, full);
            }
        }
    }

    /// Sends the outcomes collected, one envelope per queue-manager.
    fn send_outgoing(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        for (qm, list) in self.outgoing.take() {
            self.send_outcomes(&qm, list);
        }
    }

    fn send_outcomes(&mut self, qm: &str, outcomes: Vec<TaskOutcome>) {
        // The lease request waiting for these outcomes goes with them, asking for what is
        // free once they are counted.
        if self.rearm.is_waiting(qm) && !self.lease.contains_key(qm) {
            let slots = leasing::free_slots(&self.providers, self.prefetch);
            if !slots.is_empty() {
                return self.send_lease(qm.to_string(), &slots, Some(&outcomes));
            }
        }
        let payload = JsonText::of(&TaskOutcomes {
            outcomes,
            lease: None,
        })
        .unwrap_or_default();
        let envelope = Envelope::with_text(
            Target::Component(qm.to_string()),
            events::TASK_OUTCOMES,
            payload,
        );
        if let Err(e) = self.client.send(envelope) {
            warn!(error = %e, "could not forward outcomes");
        }
    }

    fn cancel(&mut self, tasks: Vec<TaskRef>) {
        let mut by_provider: HashMap<String, Vec<TaskRef>> = HashMap::new();
        for t in tasks {
            if let Some(d) = self.dispatched.remove(&t) {
                if let Some(p) = self.providers.get_mut(&d.provider) {
                    p.in_flight = p.in_flight.saturating_sub(1);
                }
                by_provider.entry(d.provider).or_default().push(t);
            }
        }
        for (pid, tasks) in by_provider {
            info!(provider = %pid, count = tasks.len(), "cancelling running tasks");
            self.send_cancel(pid, tasks);
        }
    }

    /// Tells a provider to stop these tasks (`cancel_tasks`).
    fn send_cancel(&self, provider: String, tasks: Vec<TaskRef>) {
        let payload = serde_json::to_value(CancelTasks { tasks }).unwrap_or(Value::Null);
        let _ = self
            .client
            .emit(Target::Component(provider), events::CANCEL_TASKS, payload);
    }
}

fn outcome_err(workflow_id: &str, task_id: &str, attempt: u32, error: GzError) -> TaskOutcome {
    TaskOutcome::finished(
        workflow_id.to_string(),
        task_id.to_string(),
        attempt,
        Err(error),
        String::new(),
        0,
    )
}

impl Config {
    /// An engine for tests, presenting `api_key` to the hub at `hub_url`, with the binary's
    /// prefetch ([`DEFAULT_PREFETCH`]).
    pub fn for_tests(hub_url: &str, api_key: &str) -> Config {
        Config {
            hub_url: hub_url.to_string(),
            component_id: None,
            prefetch: DEFAULT_PREFETCH,
            api_key: Some(api_key.to_string()),
        }
    }
}
