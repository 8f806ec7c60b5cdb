//! Handing out work and taking results back: lease requests (long poll), outcomes with
//! retries and backoff, methods nobody serves, and work lost with its engine (it left, went
//! silent beyond the lease timeout, or no longer lists it in its held-task reports).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::limits::{deadline_after, MAX_TIMEOUT};
use gleitzeit_protocol::payloads::{
    ExecuteTask, FinishedTask, HeldTasks, LeaseTasks, LeasedTasks, TaskOutcomes,
};
use gleitzeit_protocol::Envelope;
use gleitzeit_store::{TaskRecord, TaskStatus};
use serde_json::{json, Value};
use tracing::warn;

use super::{Changes, Lease, Manager, TaskInfo, LOST_WORK_REQUEUES, STALE_LEASE_MS};

/// `now + after`; an instant too far to represent becomes the longest timeout from now.
pub(super) fn retry_at(now: Instant, after: Duration) -> Instant {
    deadline_after(now, after)
        .or_else(|| deadline_after(now, MAX_TIMEOUT))
        .unwrap_or(now)
}

impl Manager {
    pub(super) async fn lease(&mut self, env: Envelope) -> Option<Result<Value, GzError>> {
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
            deadline: retry_at(Instant::now(), wait),
        });
        self.serve_leases().await;
        None
    }

    /// Answers waiting leases while ready tasks match their free slots.
    pub(super) async fn serve_leases(&mut self) {
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
    pub(super) fn take_for(&mut self, slots: &mut BTreeMap<String, u32>) -> Vec<(Arc<str>, usize)> {
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

    pub(super) async fn outcomes(&mut self, env: &Envelope) {
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
                        self.retries.push((
                            retry_at(Instant::now(), delay),
                            o.workflow_id.clone(),
                            i,
                        ));
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
    pub(super) async fn fail_unserved(&mut self, now: Instant) {
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
    pub(super) async fn engine_lost(&mut self, engine: &str) {
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
    pub(super) fn engine_heard(&mut self, engine: &str) {
        match self.engine_seen.get_mut(engine) {
            Some(seen) => *seen = Instant::now(),
            None => {
                self.engine_seen.insert(engine.to_string(), Instant::now());
            }
        }
    }

    /// Queues again the running tasks of engines silent for the lease timeout (registered
    /// but hung, or cut off without the hub noticing yet).
    pub(super) async fn expire_leases(&mut self, now: Instant) {
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
    pub(super) async fn engine_holds(&mut self, engine: &str, sent_at: u64, held: HeldTasks) {
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
    pub(super) async fn requeue_running(
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
}
