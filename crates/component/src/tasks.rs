//! The tasks a provider holds, from `execute_tasks` to their outcome: each runs in a spawned
//! task of its own, is held (and reported) until it ends, can be cancelled, and is either
//! finished or given back when the provider drains on shutdown.
//!
//! Independent of the hub connection (the client is optional), so it is tested in-process.
//!
//! A task passes a gate before [`Provider::execute`]: with [`Concurrency::Runtime`] a
//! semaphore of `capacity` permits, and in every case the drain: once draining, no task
//! starts any more. Tasks that did not start, and tasks still running when the grace period
//! ends, are given back to their engine as GZ1031 outcomes (the queue-manager queues them
//! again at once without using up a retry); every outcome is sent at most once, and only
//! for an attempt still held when it ends (not cancelled, not given back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::limits::{cap_outcome, MAX_OUTCOME_BYTES};
use gleitzeit_protocol::metrics::MetricFamily;
use gleitzeit_protocol::payloads::{ExecuteTask, HeldTask, TaskOutcome, TaskRef};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::holdings::Holdings;
use crate::outcomes::OutcomeSender;
use crate::provider::{Concurrency, Provider, ProviderInfo, TaskContext};

/// The handle of a held task.
struct Handle {
    /// Firing it cancels the task.
    cancel: watch::Sender<bool>,
    /// Set once the task passed the gate (is or was in `execute`).
    started: Arc<AtomicBool>,
}

/// The tasks of one provider. Cheap to clone.
pub(crate) struct Tasks<P> {
    shared: Arc<Shared<P>>,
}

impl<P> Clone for Tasks<P> {
    fn clone(&self) -> Self {
        Tasks {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<P> {
    provider: Arc<P>,
    provider_id: String,
    client: Option<HubClient>,
    held: Mutex<Holdings<Handle>>,
    outcomes: OutcomeSender,
    permits: Option<Arc<Semaphore>>,
    draining: watch::Sender<bool>,
    /// Tasks inside `execute` right now.
    running: Arc<watch::Sender<usize>>,
    handles_cancel: bool,
    /// Tasks run at once, as registered.
    capacity: u32,
}

/// What a drain ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Drained {
    /// Tasks that had not started and were given back.
    pub not_started: usize,
    /// Tasks still running when the grace period ended, given back.
    pub unfinished: usize,
}

impl<P: Provider> Tasks<P> {
    /// Tasks of `provider`, known to the hub as `provider_id`; outcomes go to `outcomes`.
    pub(crate) fn new(
        provider: Arc<P>,
        info: &ProviderInfo,
        provider_id: String,
        client: Option<HubClient>,
        outcomes: OutcomeSender,
    ) -> Self {
        let permits = match info.concurrency {
            Concurrency::Provider => None,
            Concurrency::Runtime => Some(Arc::new(Semaphore::new(info.capacity.max(1) as usize))),
        };
        let handles_cancel = provider.handles_cancel();
        // The outcome batcher watches the count of running tasks (`outcomes.rs`).
        let running = outcomes.running();
        Tasks {
            shared: Arc::new(Shared {
                provider,
                provider_id,
                client,
                held: Mutex::new(Holdings::default()),
                outcomes,
                permits,
                draining: watch::channel(false).0,
                running,
                handles_cancel,
                capacity: info.capacity,
            }),
        }
    }

    /// Takes over tasks `engine` sent.
    pub(crate) fn accept(&self, engine: &str, tasks: Vec<ExecuteTask>) {
        for task in tasks {
            self.start(engine, task);
        }
    }

    fn start(&self, engine: &str, task: ExecuteTask) {
        let key = TaskRef {
            workflow_id: task.workflow_id.clone(),
            task_id: task.task_id.clone(),
        };
        let attempt = task.attempt;
        let (cancel, cancel_rx) = watch::channel(false);
        let started = Arc::new(AtomicBool::new(false));
        let ctx = TaskContext {
            provider_id: self.shared.provider_id.clone(),
            engine: engine.to_string(),
            cancel: cancel_rx,
            client: self.shared.client.clone(),
        };
        // Held before the task can end: its end looks itself up.
        let mut held = lock(&self.shared.held);
        let handle = Handle {
            cancel,
            started: started.clone(),
        };
        if let Some(older) = held.insert(key, attempt, engine, handle) {
            // An older attempt of the same task is superseded: stop it (no outcome follows).
            older.cancel.send_replace(true);
        }
        // Its logs carry the workflow, task and attempt, in this service as in the others.
        let span = tracing::info_span!(
            "task",
            workflow_id = %task.workflow_id,
            task_id = %task.task_id,
            attempt = task.attempt,
            method = %task.method,
        );
        tokio::spawn(tracing::Instrument::instrument(
            run_task(self.shared.clone(), task, ctx, started),
            span,
        ));
    }

    /// Cancels tasks: no outcome follows for them.
    pub(crate) fn cancel(&self, tasks: Vec<TaskRef>) {
        let mut held = lock(&self.shared.held);
        for t in tasks {
            if let Some(handle) = held.take(&t) {
                handle.cancel.send_replace(true);
            }
        }
    }

    /// Per engine, the attempts held for it (for `tasks_held`).
    pub(crate) fn report(&self) -> Vec<(String, Vec<HeldTask>)> {
        lock(&self.shared.held).report()
    }

    /// How many attempts are held.
    pub(crate) fn held(&self) -> usize {
        lock(&self.shared.held).len()
    }

    /// How many tasks are inside `execute` right now.
    pub(crate) fn running(&self) -> usize {
        *self.shared.running.borrow()
    }

    /// The runtime's metrics (slots in use and in all, attempts held) and the provider's own.
    pub(crate) fn metrics(&self) -> Vec<MetricFamily> {
        let shared = &self.shared;
        let used = shared.load();
        let mut families = vec![
            MetricFamily::gauge(
                "gleitzeit_provider_slots",
                "Task slots of the provider: in use (its load) and in all (its capacity).",
            )
            .with(&[("state", "used")], f64::from(used))
            .with(&[("state", "total")], f64::from(shared.capacity)),
            MetricFamily::gauge(
                "gleitzeit_provider_tasks_held",
                "Task attempts the provider holds: running or waiting for a slot.",
            )
            .with(&[], self.held() as f64),
        ];
        families.extend(shared.provider.metrics());
        families
    }

    /// Publishes the load with the next heartbeat.
    pub(crate) fn publish_load(&self) {
        self.shared.publish_load();
    }

    /// Stops starting tasks, waits up to `grace` for the running ones, and gives back what
    /// is left (GZ1031 outcomes, tasks cancelled). Tasks accepted afterwards wait to be given
    /// back by [`Tasks::give_back`].
    pub(crate) async fn drain(&self, grace: Duration) -> Drained {
        self.shared.draining.send_replace(true);
        let mut running = self.shared.running.subscribe();
        let all_done = running.wait_for(|n| *n == 0);
        let _ = tokio::time::timeout(grace, all_done).await;
        self.give_back()
    }

    /// Gives every held task back to its engine (GZ1031, run again elsewhere) and cancels it.
    pub(crate) fn give_back(&self) -> Drained {
        self.shared.draining.send_replace(true);
        let all = lock(&self.shared.held).take_all();
        let mut drained = Drained {
            not_started: 0,
            unfinished: 0,
        };
        for (key, attempt, engine, handle) in all {
            let why = if handle.started.load(Ordering::Acquire) {
                drained.unfinished += 1;
                "shut down before the task finished"
            } else {
                drained.not_started += 1;
                "shut down before the task started"
            };
            handle.cancel.send_replace(true);
            let error = GzError::new(
                ErrorCode::Disconnected,
                format!("provider {} {why}", self.shared.provider_id),
            )
            .with_hint("the task runs again on another provider");
            let outcome = TaskOutcome::finished(
                key.workflow_id,
                key.task_id,
                attempt,
                Err(error),
                self.shared.provider_id.clone(),
                0,
            );
            self.shared.outcomes.send(engine, outcome);
        }
        drained
    }

    /// Waits until every outcome so far went to the sink.
    pub(crate) async fn flush(&self) {
        self.shared.outcomes.flush().await;
    }
}

impl<P: Provider> Shared<P> {
    fn publish_load(&self) {
        if let Some(client) = &self.client {
            client.set_load(self.load());
        }
    }

    /// The provider's own load, or the tasks in `execute`.
    fn load(&self) -> u32 {
        let running = *self.running.borrow();
        self.provider
            .load()
            .unwrap_or_else(|| u32::try_from(running).unwrap_or(u32::MAX))
    }

    /// Waits for the gate: `Some` once the task may start (with its permit, if the runtime
    /// bounds concurrency), `None` if the provider is draining.
    async fn enter(&self) -> Option<Option<OwnedSemaphorePermit>> {
        let mut draining = self.draining.subscribe();
        if *draining.borrow() {
            return None;
        }
        let Some(permits) = &self.permits else {
            return Some(None);
        };
        tokio::select! {
            biased;
            _ = draining.wait_for(|d| *d) => None,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) if !*self.draining.borrow() => Some(Some(p)),
                _ => None,
            },
        }
    }
}

/// Counts a task as running while alive.
struct RunningGuard<'a>(&'a watch::Sender<usize>);

impl<'a> RunningGuard<'a> {
    fn new(running: &'a watch::Sender<usize>) -> Self {
        running.send_modify(|n| *n += 1);
        RunningGuard(running)
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// One task from the gate to its outcome.
async fn run_task<P: Provider>(
    shared: Arc<Shared<P>>,
    task: ExecuteTask,
    ctx: TaskContext,
    started: Arc<AtomicBool>,
) {
    let key = TaskRef {
        workflow_id: task.workflow_id.clone(),
        task_id: task.task_id.clone(),
    };
    let attempt = task.attempt;
    let permit = tokio::select! {
        biased;
        _ = ctx.cancelled() => return,
        p = shared.enter() => p,
    };
    let Some(_permit) = permit else {
        // Draining: wait to be given back (which cancels the task).
        ctx.cancelled().await;
        return;
    };
    started.store(true, Ordering::Release);
    let running = RunningGuard::new(&shared.running);
    shared.publish_load();
    let started_at = now_millis();
    let work = gleitzeit_runtime::catch_panic(shared.provider.execute(task, ctx.clone()));
    let result = if shared.handles_cancel {
        work.await
    } else {
        tokio::select! {
            biased;
            _ = ctx.cancelled() => {
                drop(running);
                shared.publish_load();
                return;
            }
            r = work => r,
        }
    };
    let result = result.unwrap_or_else(|panic| {
        tracing::error!(task = %key.task_id, workflow = %key.workflow_id, %panic, "serving the task panicked");
        Err(GzError::new(
            ErrorCode::Internal,
            format!("the provider failed on this task: {panic}"),
        ))
    });
    let due = lock(&shared.held).finish(&key, attempt);
    if due {
        let outcome = TaskOutcome::finished(
            key.workflow_id,
            key.task_id,
            attempt,
            result,
            shared.provider_id.clone(),
            started_at,
        );
        shared
            .outcomes
            .send(ctx.engine, cap_outcome(outcome, MAX_OUTCOME_BYTES));
    }
    drop(running);
    shared.publish_load();
}

/// Locks a std mutex, recovering from poisoning (the data are plain maps).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
