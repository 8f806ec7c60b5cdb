//! The task and workflow life cycle: the one module where a task's or a workflow's status
//! changes, and the counters that follow from it.
//!
//! Every operation works in two phases:
//! 1. it *proposes* a [`Step`]: the new task and workflow records, the queue entries it took,
//!    the replies and messages that follow from it. Nothing in the machine changes yet.
//! 2. the caller persists the step's records in one store transaction, then calls
//!    [`Machine::commit`], which applies the step through [`Machine::apply_task`] (the only
//!    place a task's status, counters, queue entry, lease holder and retry timer change) and
//!    returns the [`Effect`]s to send. When the write fails the caller calls
//!    [`Machine::abort`] instead: the taken queue entries and answered lease requests go
//!    back, and the state is as if the step never happened.
//!
//! So a change is never visible (in memory, to engines, to watchers) before it is stored, and
//! a workflow is announced finished only in the step that stores its final record.
//!
//! Time comes in as a [`Now`] (monotonic `tokio::time::Instant` plus wall-clock ms), so the
//! unit tests (`tests*.rs`) drive leases, retries and timeouts with paused time. Pending
//! deadlines (retries, workflow timeouts, long-poll lease waits, engine silence) sit in a
//! time-ordered [`timers::Timers`], not a rescan of every task.
//!
//! Submodules: `step` (the proposal and its effects), `status` (allowed transitions and
//! counters), `timers`, `leases` (lease requests and handing out work), `outcomes` (results,
//! retries, methods nobody serves), `liveness` (engines: heartbeats, silence, held-task
//! reports, departures), `finish` (completion, cancellation, timeouts), `metrics` (the
//! figures every move yields, for `GET /metrics`), `payloads` (events and results as JSON),
//! `sharing` (the records of a workflow share their strings), `shape`, `fanout`, `primed`,
//! `opening` (tasks ready at a workflow's submission).

mod fanout;
mod finish;
mod leases;
mod liveness;
mod metrics;
mod opening;
mod outcomes;
mod payloads;
mod primed;
mod shape;
mod sharing;
mod status;
mod step;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
#[cfg(test)]
mod tests_failures;
#[cfg(test)]
mod tests_fanout;
#[cfg(test)]
mod tests_memory;
#[cfg(test)]
mod tests_opening;
#[cfg(test)]
mod tests_primed;
mod timers;

pub(crate) use opening::{open_task, open_workflow};
use payloads::task_event;
pub(crate) use payloads::{finished_result, payload, EventPayload, TaskFacts};
pub(crate) use shape::Shape;
pub(crate) use sharing::{share_strings, Shared};
pub(crate) use status::Counts;
pub(crate) use step::{Effect, Now, Step};

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::events;
use gleitzeit_protocol::limits::MAX_TIMEOUT;
use gleitzeit_protocol::payloads::{FinishedTask, Resolution};
use gleitzeit_protocol::replies::WorkflowProgress;
use gleitzeit_store::{TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus};
use gleitzeit_workflow::positions::Positions;
use gleitzeit_workflow::{FileRef, OnFailure, RetryPolicy, TaskSpec, WorkflowSpec};
use serde_json::Value;
use tokio::time::Instant;

use crate::queue::ReadyQueue;
use gleitzeit_protocol::metrics::MetricFamily;
use leases::Leases;
use liveness::Engines;
use metrics::Figures;
use timers::{Timer, Timers};

/// A workflow's key in memory (shared by queue entries, timers and holdings).
pub(crate) type WfKey = Arc<str>;

/// Extra attempts granted to tasks whose provider disappeared while running them.
pub(crate) const LOST_WORK_REQUEUES: u32 = 5;
/// Task results are included in `workflow_completed` only for workflows up to this size.
pub(crate) const RESULTS_IN_EVENT_LIMIT: usize = 1000;

/// `now + after`; an instant too far to represent becomes the longest timeout from now.
pub(crate) fn later(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(MAX_TIMEOUT))
        .unwrap_or(now)
}

/// What the machine is told at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// This queue-manager's component id (named in lease replies).
    pub(crate) id: String,
    /// An engine silent this long loses the tasks it holds.
    pub(crate) lease_timeout: Duration,
    /// Queued tasks of a method no engine offered for this long fail with GZ2015.
    pub(crate) provider_grace: Duration,
    /// Most tasks one workflow may have (a fan-out beyond it fails its template).
    pub(crate) max_tasks: usize,
}

/// Scheduling facts of one task that the store does not keep.
#[derive(Debug)]
pub(crate) struct TaskInfo {
    pub(crate) priority: u8,
    /// Its retry policy unless it is the default (one attempt): see [`TaskInfo::retry`].
    retry: Option<Box<RetryPolicy>>,
    pub(crate) timeout_ms: Option<u64>,
    /// The engine holding the task's current attempt (while running).
    pub(crate) engine: Option<Arc<str>>,
    /// Consecutive held-task reports of its engine that did not list it.
    pub(crate) missed: u16,
    /// How many tasks depend on it, when known (0: none, or a workflow with fan-outs or a
    /// batch, whose resolver hears of every end): its end need not reach the resolver at
    /// once when they are all primed on it (`primed.rs`).
    pub(crate) dependents: u16,
    /// Arrival number of its live queue entry (older entries of the task are stale).
    pub(crate) entry: Option<u64>,
    /// The files the task names (path, where its content is), handed out with it.
    pub(crate) files: Box<[(String, FileRef)]>,
    /// A task of a `fail_fast` batch: failing for good stops the workflow.
    pub(crate) fail_fast: bool,
    /// Whether the resolver waits for the task's end: it has dependents, or its workflow
    /// fans out or gathers a batch's results (an end nothing waits for is not sent).
    pub(crate) awaited: bool,
}

impl TaskInfo {
    /// Its retry policy.
    pub(crate) fn retry(&self) -> &RetryPolicy {
        static ONE_ATTEMPT: LazyLock<RetryPolicy> = LazyLock::new(RetryPolicy::default);
        self.retry.as_deref().unwrap_or(&ONE_ATTEMPT)
    }

    fn new(spec: &TaskSpec) -> Self {
        TaskInfo {
            priority: spec.priority.level(),
            retry: (!spec.retry.is_default()).then(|| Box::new(spec.retry.clone())),
            timeout_ms: spec.timeout_millis(),
            engine: None,
            missed: 0,
            dependents: 0,
            entry: None,
            files: spec
                .files
                .iter()
                .map(|(path, file)| (path.clone(), file.clone()))
                .collect(),
            fail_fast: spec.batch.as_ref().is_some_and(|b| b.fail_fast),
            awaited: true,
        }
    }

    /// The info of a task a fan-out template makes: the template's settings.
    fn for_member(&self) -> Self {
        TaskInfo {
            priority: self.priority,
            retry: self.retry.clone(),
            timeout_ms: self.timeout_ms,
            engine: None,
            missed: 0,
            dependents: 0,
            entry: None,
            files: self.files.clone(),
            fail_fast: self.fail_fast,
            awaited: true,
        }
    }
}

/// One workflow in memory.
#[derive(Debug)]
pub(crate) struct Wf {
    /// Its record (the spec lives in the store only: `spec` is null here).
    pub(crate) record: WorkflowRecord,
    pub(crate) on_failure: OnFailure,
    /// Task records in spec order.
    pub(crate) tasks: Vec<TaskRecord>,
    pub(crate) info: Vec<TaskInfo>,
    /// Where each task is in `tasks`, by id (positions only: the ids are the records').
    index: Positions,
    /// Tasks by status (kept by [`Machine::apply_task`] only).
    pub(crate) counts: Counts,
    /// When the workflow times out.
    deadline: Option<Instant>,
    /// The contents of the files its tasks name, by digest (base64, shared by every task
    /// naming one; `docs/workflows.md`, "Files travel with the workflow").
    pub(crate) attachments: HashMap<String, Arc<str>>,
    /// Tasks primed on a task still to complete, with their parameters (`primed.rs`).
    pub(crate) primed: HashMap<usize, Vec<(usize, Value)>>,
    /// Completed tasks whose dependents all ran on their primes, not yet told to the
    /// resolver (`primed.rs`), and every end before its plan was answered.
    pub(crate) untold: Vec<FinishedTask>,
    /// A resolver has answered its plan since it was taken in. Until then its ends are kept
    /// back: which resolver has the plan is not known yet, and an end could reach one
    /// before the plan does (tasks ready at the submission run before that answer).
    pub(crate) planned: bool,
}

/// The id of the task at position `p` of `tasks`.
fn task_id(tasks: &[TaskRecord], p: usize) -> Option<&str> {
    tasks.get(p).map(|t| &*t.task_id)
}

impl Wf {
    /// The position of task `id` in `tasks`.
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id, |p| task_id(&self.tasks, p))
    }

    /// Whether the parameters and results of its ended tasks are left to the store (a
    /// workflow of more than [`RESULTS_IN_EVENT_LIMIT`] tasks): read them from there.
    pub(crate) fn keeps_results_in_store(&self) -> bool {
        self.tasks.len() > RESULTS_IN_EVENT_LIMIT
    }

    /// The `workflow_progress`-style summary used by workflow events.
    pub(crate) fn progress(&self) -> WorkflowProgress {
        let c = &self.counts;
        WorkflowProgress {
            workflow_id: self.record.id.clone(),
            name: self.record.name.clone(),
            status: self.record.status,
            total_tasks: self.tasks.len(),
            completed_tasks: c.get(TaskStatus::Completed),
            failed_tasks: c.get(TaskStatus::Failed),
            skipped_tasks: c.get(TaskStatus::Skipped),
            finished_tasks: c.terminal(),
            seq: None,
        }
    }
}

/// Every workflow this queue-manager runs, the ready queue, waiting lease requests,
/// engines and timers.
pub(crate) struct Machine {
    settings: Settings,
    wfs: HashMap<WfKey, Wf>,
    queue: ReadyQueue,
    leases: Leases,
    engines: Engines,
    timers: Timers,
    /// When an engine last offered each method (busy or not).
    method_seen: HashMap<String, Instant>,
    /// Methods (routing keys) with queued tasks, since when they have been waiting (set
    /// when a task is queued, cleared while an engine serves the method).
    waiting_since: HashMap<String, Instant>,
    started: Instant,
    last_tick: Instant,
    /// Jitter for retry backoff, in `0.0..1.0` (fixed in tests).
    jitter: fn() -> f64,
    /// What the moves add up to, for `metrics`.
    figures: Figures,
}

impl Machine {
    /// An empty machine started at `now`.
    pub(crate) fn new(settings: Settings, now: Instant) -> Self {
        Machine {
            settings,
            wfs: HashMap::new(),
            queue: ReadyQueue::default(),
            leases: Leases::default(),
            engines: Engines::default(),
            timers: Timers::default(),
            method_seen: HashMap::new(),
            waiting_since: HashMap::new(),
            started: now,
            last_tick: now,
            jitter: rand::random::<f64>,
            figures: Figures::default(),
        }
    }

    /// Fixes the retry jitter (tests).
    #[cfg(test)]
    pub(crate) fn with_jitter(mut self, jitter: fn() -> f64) -> Self {
        self.jitter = jitter;
        self
    }

    // ------------------------------------------------------------------ reading

    /// The workflow `id`, when this queue-manager runs it.
    pub(crate) fn workflow(&self, id: &str) -> Option<&Wf> {
        self.wfs.get(id)
    }

    /// Whether this queue-manager runs workflow `id`.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.wfs.contains_key(id)
    }

    /// Ids of the workflows in memory.
    pub(crate) fn ids(&self) -> Vec<WfKey> {
        self.wfs.keys().cloned().collect()
    }

    /// The metrics of the life cycle as of now.
    pub(crate) fn metrics(&self) -> Vec<MetricFamily> {
        self.figures.families(self.wfs.len())
    }

    /// Whether lease requests wait and tasks are queued (a [`Machine::serve`] may hand out work).
    pub(crate) fn may_serve(&self) -> bool {
        !self.leases.is_empty() && !self.queue.is_empty()
    }

    // ------------------------------------------------------------------ adding and dropping

    /// Takes a workflow into memory: a new one (all tasks pending) or one resumed from the
    /// store, whose queued, running and retrying tasks are queued again (their work may run
    /// again: at-least-once; the store learns it with their next change). Returns false
    /// (and takes nothing) when the tasks are not the spec's tasks.
    pub(crate) fn add(
        &mut self,
        record: WorkflowRecord,
        spec: &WorkflowSpec,
        tasks: Vec<TaskRecord>,
        now: Now,
    ) -> bool {
        // Tasks past the spec's own were made by fan-outs.
        let extra = tasks.get(spec.tasks.len()..).unwrap_or_default();
        match Shape::of(spec, extra) {
            Some(shape) => self.add_shaped(record, shape, tasks, now),
            None => false,
        }
    }

    /// [`Machine::add`] for a spec whose [`Shape`] was taken already (its spec may be gone).
    /// Returns false (and takes nothing) when the tasks are not the shape's tasks.
    pub(crate) fn add_shaped(
        &mut self,
        record: WorkflowRecord,
        shape: Shape,
        mut tasks: Vec<TaskRecord>,
        now: Now,
    ) -> bool {
        // The id its records share already (a submission's), else a new one.
        let key: WfKey = tasks
            .first()
            .map(|t| t.workflow_id.clone())
            .filter(|id| **id == *record.id)
            .unwrap_or_else(|| Arc::from(record.id.as_str()));
        let Shape {
            mut info,
            on_failure,
            timeout,
            attachments,
        } = shape;
        if info.len() != tasks.len() || self.wfs.contains_key(&key) {
            return false;
        }
        share_strings(&key, &mut tasks);
        let mut counts = Counts::default();
        for (i, t) in tasks.iter_mut().enumerate() {
            if matches!(t.status, TaskStatus::Running | TaskStatus::Retrying) {
                t.status = TaskStatus::Queued;
            }
            counts.add(t.status);
            self.figures.arrived(t);
            if t.status == TaskStatus::Queued {
                let route = t.route();
                self.waiting_since
                    .entry(route.to_string())
                    .or_insert(now.at);
                let seq = self.queue.enqueue(&route, info[i].priority, key.clone(), i);
                info[i].entry = Some(seq);
            }
        }
        let index = Positions::of(tasks.len(), |p| task_id(&tasks, p));
        // Out-of-range timeouts never get here (validation and recovery refuse them).
        let deadline = timeout.and_then(|d| now.at.checked_add(d));
        if let Some(at) = deadline {
            self.timers.add(at, Timer::Deadline(key.clone()));
        }
        self.wfs.insert(
            key,
            Wf {
                record,
                on_failure,
                tasks,
                info,
                index,
                counts,
                deadline,
                attachments,
                primed: HashMap::new(),
                untold: Vec::new(),
                planned: false,
            },
        );
        true
    }

    /// Drops a workflow from memory without a write (another queue-manager owns it now).
    /// Its queue entries, timers and holdings go stale and are skipped where met.
    pub(crate) fn drop_workflow(&mut self, id: &str) -> Option<Wf> {
        let wf = self.wfs.remove(id)?;
        for t in &wf.tasks {
            self.figures.left(t);
        }
        for (i, info) in wf.info.iter().enumerate() {
            if let Some(engine) = &info.engine {
                self.engines.release(engine, &Arc::from(id), i);
            }
        }
        Some(wf)
    }

    // ------------------------------------------------------------------ the resolver

    /// The resolver answered: ready tasks are queued (the workflow starts with its first),
    /// tasks it blocked fail or are skipped.
    pub(crate) fn resolution(&self, id: &str, res: Resolution, now: Now) -> Step {
        let mut step = Step::default();
        let Some((key, wf)) = self.wfs.get_key_value(id) else {
            return step;
        };
        if wf.record.status.is_terminal() {
            return step;
        }
        let mut refused = false;
        for exp in res.expanded {
            refused |= self.expand_into(&mut step, key, exp, now);
        }
        for joined in res.joined {
            self.join_into(&mut step, key, joined, now);
        }
        for r in res.ready {
            if let Some(i) = wf.position(&r.task_id) {
                self.queue_ready(&mut step, key, i, r.params, now);
            }
        }
        let blocked = res
            .failed
            .into_iter()
            .map(|b| (b, TaskStatus::Failed))
            .chain(res.skipped.into_iter().map(|b| (b, TaskStatus::Skipped)));
        for (b, status) in blocked {
            let Some(i) = wf.position(&b.task_id) else {
                continue;
            };
            if let Some(t) = self.transition(&mut step, key, i, status, now) {
                t.error = serde_json::to_value(&b.error).ok();
            }
        }
        // The resolver decided those itself: nothing to tell it back (unless a fan-out
        // it made was refused).
        step.tell_resolver = refused;
        step.answered = Some(key.clone());
        self.finalize(&mut step, now);
        step
    }

    // ------------------------------------------------------------------ time

    /// What is due at `now`: retries, workflow timeouts, ended lease waits, silent engines,
    /// and queued tasks of methods nobody serves.
    pub(crate) fn tick(&mut self, now: Now) -> Step {
        self.stalled(now);
        let mut step = Step::default();
        for timer in self.timers.due(now.at) {
            match timer {
                Timer::Retry(key, i, attempt) => self.retry_due(&mut step, &key, i, attempt, now),
                Timer::Deadline(key) => {
                    let due = self
                        .wfs
                        .get(&key)
                        .is_some_and(|wf| wf.deadline.is_some_and(|d| d <= now.at));
                    if due {
                        let err = GzError::new(
                            gleitzeit_protocol::errors::ErrorCode::WorkflowTimeout,
                            format!("workflow {key} exceeded its timeout"),
                        );
                        self.stop_into(&mut step, &key, WorkflowStatus::Failed, &err, now);
                    }
                }
                Timer::LeaseWait(n) => self.lease_wait_over(n, &mut step),
                Timer::Silence(engine) => self.silence_check(&engine, &mut step, now),
            }
        }
        self.fail_unserved(&mut step, now);
        self.finalize(&mut step, now);
        step
    }

    // ------------------------------------------------------------------ the transition function

    /// Proposes moving task `i` of `wf` to `to`, stamping the times that go with it; `None`
    /// (and no change) when the life cycle does not allow the move from its current status.
    /// Every status change of a task goes through here (and is applied by
    /// [`Machine::apply_task`]).
    pub(crate) fn transition<'s>(
        &self,
        step: &'s mut Step,
        wf: &WfKey,
        i: usize,
        to: TaskStatus,
        now: Now,
    ) -> Option<&'s mut TaskRecord> {
        let from = step.status(self, wf, i)?;
        if !status::allowed(from, to) {
            return None;
        }
        let t = step.edit(self, wf, i)?;
        t.status = to;
        match to {
            TaskStatus::Queued => t.queued_at = Some(now.ms),
            TaskStatus::Running => {
                t.attempts = t.attempts.saturating_add(1);
                t.started_at = Some(now.ms);
                t.finished_at = None;
            }
            TaskStatus::Pending | TaskStatus::Retrying => {}
            TaskStatus::Completed
            | TaskStatus::Failed
            | TaskStatus::Skipped
            | TaskStatus::Cancelled => t.finished_at = Some(now.ms),
        }
        Some(t)
    }

    /// Proposes a workflow's move to `to` (with its error, if any).
    fn workflow_transition(
        &self,
        step: &mut Step,
        wf: &WfKey,
        to: WorkflowStatus,
        error: Option<&GzError>,
        now: Now,
    ) {
        let Some(r) = step.edit_workflow(self, wf) else {
            return;
        };
        if r.status.is_terminal() || r.status == to {
            return;
        }
        r.status = to;
        match to {
            WorkflowStatus::Running => r.started_at = Some(now.ms),
            WorkflowStatus::Pending => {}
            _ => {
                r.finished_at = Some(now.ms);
                r.error = error.and_then(|e| serde_json::to_value(e).ok());
            }
        }
    }

    // ------------------------------------------------------------------ commit and abort

    /// Gives back what a step took when its write failed (queue entries and lease
    /// requests); returns the replies that go out anyway.
    pub(crate) fn abort(&mut self, step: Step) -> Vec<Effect> {
        for (method, entry) in step.taken {
            self.queue.restore(&method, entry);
        }
        self.leases.restore(step.served);
        step.immediate
    }

    /// Applies a step whose records are stored, and returns what to send: replies first,
    /// then task events, progress, messages to resolvers and engines, and the final
    /// workflow events.
    pub(crate) fn commit(&mut self, step: Step, now: Now) -> Vec<Effect> {
        let Step {
            tasks,
            workflows,
            changes,
            effects: replies,
            immediate,
            tell_resolver,
            answered,
            added,
            ..
        } = step;
        for a in added {
            self.install(a);
        }
        let mut effects = immediate;
        effects.extend(replies);
        let mut finished: HashMap<WfKey, Vec<primed::End>> = HashMap::new();
        let mut progressed: Vec<WfKey> = Vec::new();
        for (record, change) in tasks.into_iter().zip(changes) {
            // Read before the primes go with the task's end.
            let cover = self.prime_cover(&change, &record);
            let Some(event) = self.apply_task(&change, record, now) else {
                continue;
            };
            let Some(wf) = self.wfs.get(&change.wf) else {
                continue;
            };
            let trim = wf.keeps_results_in_store();
            let t = &wf.tasks[change.i];
            if matches!(t.status, TaskStatus::Completed | TaskStatus::Failed)
                && wf.info[change.i].awaited
            {
                finished.entry(change.wf.clone()).or_default().push((
                    FinishedTask {
                        task_id: t.task_id.to_string(),
                        status: t.status.as_str().into(),
                        result: finished_result(t),
                    },
                    cover,
                ));
            }
            if t.status.is_terminal() && !progressed.contains(&change.wf) {
                progressed.push(change.wf.clone());
            }
            let ended = t.status.is_terminal();
            if let Some(event) = event {
                effects.push(Effect::Event {
                    wf: change.wf.clone(),
                    event,
                    payload: task_event(&change.wf, wf, change.i),
                });
            }
            if ended && trim {
                // Stored before this commit: memory keeps the task's state, not its data.
                if let Some(t) = self
                    .wfs
                    .get_mut(&change.wf)
                    .and_then(|w| w.tasks.get_mut(change.i))
                {
                    t.params = None;
                    t.result = None;
                }
            }
        }
        let mut ended = Vec::new();
        for record in workflows {
            let key: WfKey = Arc::from(record.id.as_str());
            let Some(wf) = self.wfs.get_mut(&key) else {
                continue;
            };
            let started = wf.record.status == WorkflowStatus::Pending
                && record.status == WorkflowStatus::Running;
            let spec = std::mem::take(&mut wf.record.spec);
            wf.record = WorkflowRecord { spec, ..record };
            if started {
                effects.push(Effect::Event {
                    wf: key.clone(),
                    event: events::WORKFLOW_STARTED,
                    payload: payload(wf.progress()).into(),
                });
            }
            if wf.record.status.is_terminal() {
                ended.push(key);
            }
        }
        if tell_resolver {
            for (wf, list) in finished {
                if !ended.contains(&wf) {
                    if let Some(list) = self.ends_to_tell(&wf, list) {
                        effects.push(Effect::TellResolver { wf, finished: list });
                    }
                }
            }
        }
        if let Some(key) = answered.filter(|k| !ended.contains(k)) {
            if let Some(held) = self.planned(&key) {
                effects.push(Effect::TellResolver {
                    wf: key,
                    finished: held,
                });
            }
        }
        for key in progressed {
            if let Some(wf) = self.wfs.get(&key) {
                effects.push(Effect::Event {
                    wf: key.clone(),
                    event: events::WORKFLOW_PROGRESS,
                    payload: payload(wf.progress()).into(),
                });
            }
        }
        for key in ended {
            if let Some(wf) = self.drop_workflow(&key) {
                self.figures.workflow_finished(wf.record.status);
                effects.push(finish::announce(&wf));
                effects.push(Effect::Finished { wf: key });
            }
        }
        effects
    }

    /// Takes a task a fan-out added into its workflow, pending (its stored record then
    /// moves it on like any other task's).
    fn install(&mut self, added: step::Added) {
        let Some(wf) = self.wfs.get_mut(&added.wf) else {
            return;
        };
        if added.i != wf.tasks.len() {
            return;
        }
        wf.counts.add(TaskStatus::Pending);
        self.figures.arrived(&added.pending);
        let tasks = &wf.tasks;
        wf.index
            .insert(&added.pending.task_id, added.i, |p| task_id(tasks, p));
        wf.tasks.push(added.pending);
        wf.info.push(added.info);
    }

    /// Applies one stored task record: status counters, queue entry, lease holder and retry
    /// timer follow its status. Returns `None` when the workflow is gone, else the event the
    /// move announces (if any).
    fn apply_task(
        &mut self,
        change: &step::Change,
        record: TaskRecord,
        now: Now,
    ) -> Option<Option<&'static str>> {
        let (key, i) = (&change.wf, change.i);
        let wf = self.wfs.get_mut(key)?;
        let from = wf.tasks.get(i)?.status;
        let to = record.status;
        #[cfg(test)]
        tests::taken(from, to);
        wf.counts.moved(from, to);
        if to.is_terminal() {
            wf.primed.remove(&i);
        }
        let info = &mut wf.info[i];
        if from == TaskStatus::Running {
            if let Some(old) = info.engine.take() {
                self.engines.release(&old, key, i);
            }
        }
        info.missed = 0;
        if to != TaskStatus::Queued {
            info.entry = None;
        }
        match to {
            TaskStatus::Queued if from != TaskStatus::Queued || info.entry.is_none() => {
                let route = record.route();
                self.waiting_since
                    .entry(route.to_string())
                    .or_insert(now.at);
                info.entry = Some(self.queue.enqueue(&route, info.priority, key.clone(), i));
            }
            TaskStatus::Running => {
                if let Some(engine) = &change.engine {
                    self.engines.hold(
                        engine,
                        key.clone(),
                        i,
                        now.at,
                        self.settings.lease_timeout,
                        &mut self.timers,
                    );
                    info.engine = Some(engine.clone());
                }
            }
            TaskStatus::Retrying => {
                let delay = change.retry_after.unwrap_or_default();
                self.timers.add(
                    later(now.at, delay),
                    Timer::Retry(key.clone(), i, record.attempts),
                );
            }
            _ => {}
        }
        self.figures.moved(&wf.tasks[i], &record, now.ms);
        wf.tasks[i] = record;
        Some(status::event(from, to))
    }

    /// Adds the final workflow records of every workflow whose tasks the step finishes.
    fn finalize(&self, step: &mut Step, now: Now) {
        for key in step.touched_workflows() {
            let Some(wf) = self.wfs.get(&key) else {
                continue;
            };
            if let Some(err) = self.failed_fast(step, wf, &key) {
                self.stop_into(step, &key, WorkflowStatus::Failed, &err, now);
                continue;
            }
            // The first ready task starts the workflow.
            if wf.record.status == WorkflowStatus::Pending
                && step.moves_to(&key, TaskStatus::Queued)
            {
                self.workflow_transition(step, &key, WorkflowStatus::Running, None, now);
            }
            let counts = step.counts_after(wf, &key);
            let total = wf.tasks.len() + step.added_to(&key);
            if counts.terminal() < total || step.workflow_is_final(self, &key) {
                continue;
            }
            let (failed, skipped) = (
                counts.get(TaskStatus::Failed),
                counts.get(TaskStatus::Skipped),
            );
            if (failed == 0 && skipped == 0) || wf.on_failure == OnFailure::Continue {
                self.workflow_transition(step, &key, WorkflowStatus::Completed, None, now);
            } else {
                let first = (0..total)
                    .find(|&i| step.status(self, &key, i) == Some(TaskStatus::Failed))
                    .and_then(|i| step.record(self, &key, i))
                    .map(|t| t.task_id.clone());
                let err = GzError::new(
                    gleitzeit_protocol::errors::ErrorCode::TaskFailed,
                    format!(
                        "{failed} task(s) failed, {skipped} skipped{}",
                        first
                            .map(|f| format!(" (first failure: {f})"))
                            .unwrap_or_default()
                    ),
                );
                self.workflow_transition(step, &key, WorkflowStatus::Failed, Some(&err), now);
            }
        }
    }
}
