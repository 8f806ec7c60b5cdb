//! The queue-manager's driver: it decodes what arrives (requests, outcomes, resolver
//! answers, the clock), asks the life-cycle [`Machine`] for a step, stores the step
//! (`persistence.rs`), commits it and sends what follows (`publishing.rs`, replies,
//! messages to resolvers and engines). Every task and workflow status change happens in
//! `crate::machine`; this module and its children only move data in and out.
//!
//! Children: `submission` (submit, cancel), `queries` (reads), `ownership` (who may see a
//! workflow; which queue-manager runs it), `planning` (resolver calls), `recovery`
//! (resuming from the store), `admission` (size limits), `intake` (outcome envelopes
//! handled as one batch), `persistence`, `publishing`.

mod admission;
mod alerts;
mod intake;
mod ownership;
mod persistence;
mod planning;
mod publishing;
mod queries;
mod recovery;
mod submission;
mod watchers;

pub use admission::WorkflowLimits;

use std::sync::Arc;
use std::time::Duration;

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{CancelTasks, LeaseTasks, Resolution};
use gleitzeit_protocol::requests::QueueManagerRequest;
use gleitzeit_protocol::{to_payload, Envelope, Target};
use gleitzeit_store::Store;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use crate::machine::{Effect, Machine, Now, Settings, Step};
use persistence::Persistence;
use planning::Planner;
use publishing::Publisher;

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

/// Lease requests that waited here longer than this (ms, corrected for the sender's clock:
/// `clocks.rs`) are dropped: the engine's own timeout is 10 s.
const STALE_LEASE_MS: u64 = 5_000;
/// How long ownership of a workflow lasts without renewal; renewed every [`OWNER_RENEW`].
pub(crate) const OWNER_TTL: Duration = Duration::from_secs(10);
/// How often ownership is renewed and unowned workflows are looked for.
const OWNER_RENEW: Duration = Duration::from_secs(3);

/// The driver around the life-cycle machine.
pub(crate) struct Manager {
    machine: Machine,
    persistence: Persistence,
    publisher: Publisher,
    planner: Planner,
    client: HubClient,
    tx: mpsc::UnboundedSender<Internal>,
    catalog: gleitzeit_workflow::MethodCatalog,
    /// Senders' clock offsets, to tell how long a message waited here.
    clocks: crate::clocks::Clocks,
    /// When ownership of the workflows in memory was last renewed.
    last_ownership: Instant,
    /// How large a submitted workflow may be.
    limits: WorkflowLimits,
    /// When a backlog alert was last sent, by method (`alerts.rs`).
    alerted: alerts::Alerted,
    /// Outcome envelopes held to be handled as one batch (`intake.rs`).
    intake: intake::Intake,
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
        let settings = Settings {
            id: client.id().to_string(),
            lease_timeout,
            provider_grace,
            max_tasks: limits.max_tasks,
        };
        Manager {
            machine: Machine::new(settings, Instant::now()),
            persistence: Persistence::new(store),
            publisher: Publisher::new(client.clone()),
            planner: Planner::default(),
            client,
            tx,
            catalog: gleitzeit_workflow::MethodCatalog::builtin(),
            clocks: crate::clocks::Clocks::default(),
            last_ownership: Instant::now(),
            limits,
            alerted: alerts::Alerted::new(),
            intake: intake::Intake::default(),
        }
    }

    /// The life cycle's metrics (`metrics`, asked by the hub).
    pub(crate) fn metrics(&self) -> Vec<gleitzeit_protocol::metrics::MetricFamily> {
        let mut families = self.machine.metrics();
        families.push(self.publisher.metrics());
        families
    }

    // ---------------------------------------------------------------- steps

    /// Stores a step, then commits it and sends what follows (or gives back what it took
    /// when it cannot be stored); then hands out work that may now fit.
    async fn run(&mut self, mut step: Step) {
        // Tasks the step makes ready go to waiting lease requests in the same write.
        self.machine.serve_fresh(&mut step, Now::current());
        self.run_one(step).await;
        if self.machine.may_serve() {
            let serve = self.machine.serve(Now::current());
            self.run_one(serve).await;
        }
    }

    async fn run_one(&mut self, step: Step) {
        let effects = self.settle(step).await;
        self.send(effects).await;
    }

    /// Stores a step and commits it, or gives back what it took when it cannot be stored:
    /// what it sends (nothing for an empty step).
    async fn settle(&mut self, step: Step) -> Vec<Effect> {
        if step.is_empty() {
            return Vec::new();
        }
        let (step, stored) = self.persistence.store(step).await;
        match stored {
            Ok(()) => self.machine.commit(step, Now::current()),
            Err(_) => self.machine.abort(step),
        }
    }

    async fn send(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Event { wf, event, payload } => self.publisher.emit(&wf, event, payload),
                Effect::Reply { to, result } => {
                    let _ = self.client.respond_serialized(&to, result);
                }
                Effect::CancelTasks { engine, tasks } => {
                    let payload =
                        serde_json::to_value(CancelTasks { tasks }).unwrap_or(Value::Null);
                    let _ = self.client.emit(
                        Target::Component(engine.to_string()),
                        events::CANCEL_TASKS,
                        payload,
                    );
                }
                Effect::TellResolver { wf, finished } => {
                    self.planner.tell(&self.client, &self.tx, &wf, finished)
                }
                Effect::Finished { wf } => {
                    self.publisher.log.finished(&wf);
                    self.planner.forget(&self.client, &wf);
                    let (id, owner) = (wf.to_string(), self.client.id().to_string());
                    self.persistence
                        .spawn("releasing ownership", move |s| s.release(&id, &owner));
                }
            }
        }
    }

    // ---------------------------------------------------------------- envelopes

    pub(crate) async fn on_envelope(&mut self, mut env: Envelope) {
        let reply = match self.decode(&mut env) {
            Ok(request) => {
                // Outcomes held are handled before any other message.
                if !matches!(request, QueueManagerRequest::Outcomes(_)) {
                    self.handle_outcomes().await;
                }
                self.handle(&env, request).await
            }
            Err(e) if QueueManagerRequest::expects_reply(&env.event) => Some(Err(e)),
            Err(e) => {
                warn!(event = %env.event, from = %env.source, error = %e, "malformed report ignored");
                None
            }
        };
        if let Some(r) = reply {
            let _ = self.client.respond(&env, r);
        }
        // Events go out together when nothing more is waiting and they waited a moment
        // (`on_idle`), or once they waited long enough under a backlog (`publishing.rs`).
        self.publisher.flush_overdue();
    }

    /// Nothing more is waiting: the outcomes held are handled, and the events collected go
    /// out once they waited their moment (`publishing.rs`).
    pub(crate) async fn on_idle(&mut self) {
        self.handle_outcomes().await;
        self.publisher.flush_idle();
    }

    /// When the events held back are due.
    pub(crate) fn idle_deadline(&self) -> Option<Instant> {
        self.publisher.due()
    }

    /// Handles the outcomes held, one step per engine.
    async fn handle_outcomes(&mut self) {
        if !self.intake.is_empty() {
            self.outcomes_then(None).await;
        }
    }

    /// The outcomes held, one step per engine; a lease request (`then`) joins the last
    /// step: one step and one write, so the tasks the outcomes free or make ready (the next
    /// link of a chain) go out in its answer after one commit instead of two.
    async fn outcomes_then(&mut self, then: Option<(Envelope, LeaseTasks)>) {
        let mut held = self.intake.take();
        let last = then.as_ref().and_then(|_| held.pop());
        for (engine, batch) in held {
            let step = self.machine.outcomes(&engine, batch, Now::current());
            self.run(step).await;
        }
        if let Some((env, req)) = then {
            let now = Now::current();
            let mut step = match last {
                Some((engine, batch)) => self.machine.outcomes(&engine, batch, now),
                None => Step::default(),
            };
            self.machine.lease_request_into(&mut step, env, req, now);
            self.run(step).await;
        }
    }

    /// Decodes what arrived; a submission's task count (and, parsed, its size) is checked
    /// on its raw payload first, before anything turns a huge spec into a workflow. (A
    /// submission kept as text, `Envelope::raw`, has its tasks counted by a scan of the
    /// text; its size is checked on the normalized spec in `submit`, and the hub's message
    /// limit bounds the text.)
    fn decode(&self, env: &mut Envelope) -> Result<QueueManagerRequest, GzError> {
        if env.event == events::WORKFLOW_SUBMIT {
            if let Some(spec) = env.payload.get("spec") {
                self.limits.check_raw(spec)?;
            }
            if let Some(text) = env.raw.as_ref().and_then(|r| r.text()) {
                self.limits.check_count(admission::count_tasks(text))?;
            }
        }
        QueueManagerRequest::decode_envelope(env)
    }

    /// Handles one request; `None` when no reply goes out now (reports, forwarded requests,
    /// lease requests answered later).
    async fn handle(
        &mut self,
        env: &Envelope,
        request: QueueManagerRequest,
    ) -> Option<Result<Value, GzError>> {
        use QueueManagerRequest as R;
        match request {
            R::Submit(sub) => {
                let submitted = self.submit(env, sub).await;
                let new = submitted.as_ref().ok().filter(|s| s.new);
                let new = new.map(|s| s.reply.workflow_id.clone());
                let _ = self
                    .client
                    .respond(env, submitted.and_then(|s| json(s.reply)));
                if let Some(id) = new {
                    self.open(&id).await;
                }
                None
            }
            R::Get(r) => {
                // Serialized straight to text: the reply can hold 10,000s of tasks.
                let reply = self.get(env, r).await;
                let _ = self.client.respond_serialized(env, reply);
                None
            }
            R::List(q) => Some(self.list(env, q).await),
            R::Cancel(r) => self
                .cancel(env, r)
                .await
                .transpose()
                .map(|r| r.and_then(json)),
            R::TaskGet(q) => Some(self.task_get(env, q).await),
            R::Events(q) => match self.events_since(env, q).await {
                // Serialized straight to text from the log's texts.
                Ok(Some(reply)) => {
                    let _ = self.client.respond_serialized(env, Ok(reply));
                    None
                }
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            },
            R::Owner(r) => Some(self.owner_query(r).await.and_then(json)),
            R::StoreStatus => Some(self.store_status().await),
            R::Lease(req) => {
                self.machine.engine_heard(&env.source, Now::current());
                // Kept until answered: its payload was read into `req`.
                self.lease(env.head(), req).await
            }
            R::Outcomes(mut batch) => {
                // Held, and handled with the ones that follow (`intake.rs`); a lease request
                // that came with them is handled after them, and answered.
                self.machine.engine_heard(&env.source, Now::current());
                let lease = batch.lease.take();
                let due = self.intake.hold(&env.source, batch);
                match lease {
                    Some(req) => self.lease(env.head(), req).await,
                    None => {
                        if due {
                            self.handle_outcomes().await;
                        }
                        None
                    }
                }
            }
            R::Held(held) => {
                let now = Now::current();
                self.machine.engine_heard(&env.source, now);
                self.clocks.age(&env.source, env.ts, now_millis());
                let sent_at = self.clocks.to_local(&env.source, env.ts);
                let step = self.machine.held_report(&env.source, sent_at, held, now);
                self.run(step).await;
                None
            }
            R::ComponentLeft(c) => {
                // Only the hub says who left (a forged departure would run tasks twice).
                if env.auth.as_ref().is_some_and(|a| a.is_hub()) {
                    let step = self.machine.engine_lost(&c.component_id, Now::current());
                    self.run(step).await;
                } else {
                    warn!(from = %env.source, "component_left not from the hub; ignored");
                }
                None
            }
            R::ComponentNews => None,
            R::RoomsWatched(news) => {
                // Only the hub knows the rooms (a forged report could hide events).
                if env.auth.as_ref().is_some_and(|a| a.is_hub()) {
                    self.publisher.watchers.apply(news);
                } else {
                    warn!(from = %env.source, "rooms_watched not from the hub; ignored");
                }
                None
            }
        }
    }

    /// A lease request (alone, or inside the outcomes that freed its slots): answered when
    /// work fits, or when its wait is over; it joins the last step of the outcomes held
    /// ([`Manager::outcomes_then`]). A request that waited here longer than the engine waits
    /// for the answer (the store was unreachable) is not answered with tasks: the engine has
    /// given up on it (the outcomes are handled all the same).
    async fn lease(&mut self, env: Envelope, req: LeaseTasks) -> Option<Result<Value, GzError>> {
        if self.clocks.age(&env.source, env.ts, now_millis()) > STALE_LEASE_MS {
            self.handle_outcomes().await;
        } else {
            self.outcomes_then(Some((env, req))).await;
        }
        None
    }

    pub(crate) async fn on_internal(&mut self, msg: Internal) {
        self.handle_outcomes().await;
        match msg {
            Internal::Resolution {
                workflow_id,
                result: Ok(res),
            } if !self.machine.contains(&workflow_id) => {
                // Planned while it was stored, and then not stored (or gone since): its
                // resolver may drop it.
                self.planner.answered(&workflow_id, &res);
                self.planner.forget(&self.client, &workflow_id);
            }
            Internal::Resolution {
                workflow_id,
                result: Ok(mut res),
            } => {
                self.machine.keep_primes(&workflow_id, &mut res);
                self.planner.answered(&workflow_id, &res);
                let step = self.machine.resolution(&workflow_id, res, Now::current());
                self.run(step).await;
            }
            Internal::Resolution {
                workflow_id,
                result: Err(e),
            } => self.plan_failed(&workflow_id, e).await,
            Internal::Replan { workflow_id } => {
                self.planner.replan_due(&workflow_id);
                if self.machine.contains(&workflow_id) {
                    self.plan(&workflow_id, None).await;
                }
            }
        }
        self.publisher.flush_overdue();
    }

    pub(crate) async fn on_tick(&mut self) {
        self.handle_outcomes().await;
        let now = Now::current();
        if now.at.duration_since(self.last_ownership) >= OWNER_RENEW {
            self.last_ownership = now.at;
            self.renew_ownership().await;
            if let Err(e) = self.recover().await {
                warn!(error = %e, "could not look for workflows to take over");
            }
        }
        self.publisher.log.collect();
        self.alert_backlogs(now);
        let step = self.machine.tick(now);
        self.run(step).await;
        self.publisher.flush();
    }

    /// `store_status`: the store in use and its health.
    async fn store_status(&self) -> Result<Value, GzError> {
        let info = self.persistence.call(|s| Ok(s.info())).await?;
        to_payload(&info)
    }
}

/// A typed reply as the JSON that goes on the wire.
fn json<T: serde::Serialize>(reply: T) -> Result<Value, GzError> {
    to_payload(&reply)
}
