//! Lease requests and handing out work. An engine asks with `lease_tasks` (its free slots
//! per method, and how long it will wait: a long poll); the request waits here until ready
//! tasks fit its slots or its wait is over (then it is answered with no tasks). A new
//! request from an engine supersedes its waiting one. Handing out a task moves it to
//! `running` under that engine's lease.
//!
//! A task is handed out with the contents of the files it names (`ExecuteTask::files`, from
//! the workflow's attachments). So that an answer stays well within the hub's message limit,
//! one answer carries at most [`LEASE_FILE_BYTES`] of them: the first task always goes, the
//! tasks that would not fit stay queued where they were, for the engine's next request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::payloads::{ExecuteTaskRef, LeaseTasks, TaskFile};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::Envelope;
use gleitzeit_store::TaskStatus;
use serde_json::value::{to_raw_value, RawValue};

use super::timers::Timer;
use super::{later, Effect, Machine, Now, Step, Wf, WfKey};
use gleitzeit_workflow::FileRef;

/// The longest a lease request waits for work.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The most file content (base64) one lease answer carries: a workflow carries at most
/// 16 MiB of files (about 21 MiB as base64), so any one task fits, and an answer stays far
/// below the hub's 64 MiB message limit.
pub(crate) const LEASE_FILE_BYTES: usize = 24 * 1024 * 1024;

/// A lease request waiting for work.
#[derive(Debug)]
pub(crate) struct Waiting {
    /// Its number (for its wait timer).
    n: u64,
    env: Envelope,
    engine: Arc<str>,
    slots: BTreeMap<String, u32>,
}

/// Waiting lease requests, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    waiting: VecDeque<Waiting>,
    seq: u64,
}

impl Leases {
    /// True when no request waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Puts answered requests back (their answer was not stored), in their old order.
    pub(crate) fn restore(&mut self, served: Vec<Waiting>) {
        for w in served.into_iter().rev() {
            self.waiting.push_front(w);
        }
    }

    /// Removes the waiting requests of `engine`.
    pub(crate) fn remove_engine(&mut self, engine: &str) -> Vec<Waiting> {
        let mut gone = Vec::new();
        self.waiting.retain_mut(|w| {
            let same = &*w.engine == engine;
            if same {
                gone.push(Waiting {
                    n: w.n,
                    env: w.env.clone(),
                    engine: w.engine.clone(),
                    slots: std::mem::take(&mut w.slots),
                });
            }
            !same
        });
        gone
    }

    /// Removes request `n` if it still waits.
    fn remove(&mut self, n: u64) -> Option<Waiting> {
        let pos = self.waiting.iter().position(|w| w.n == n)?;
        self.waiting.remove(pos)
    }
}

/// The answer to a lease request (a `LeasedTasks`), from tasks already written as JSON.
fn lease_reply(id: &str, tasks: Vec<Box<RawValue>>) -> Result<Box<RawValue>, GzError> {
    #[derive(serde::Serialize)]
    struct Leased<'a> {
        queue_manager_id: &'a str,
        tasks: &'a [Box<RawValue>],
    }
    to_raw_value(&Leased {
        queue_manager_id: id,
        tasks: &tasks,
    })
    .map_err(|e| {
        GzError::new(
            gleitzeit_protocol::errors::ErrorCode::Internal,
            format!("lease reply not written: {e}"),
        )
    })
}

impl Machine {
    /// [`Machine::lease_request_into`] as a step of its own (the machine tests' way in).
    #[cfg(test)]
    pub(crate) fn lease_request(&mut self, env: Envelope, req: LeaseTasks, now: Now) -> Step {
        let mut step = Step::default();
        self.lease_request_into(&mut step, env, req, now);
        step
    }

    /// An engine asks for work: the request waits (superseding the engine's older one) and
    /// is served at once if ready tasks fit; added to `step`, which may hold the outcomes
    /// that came with the request (the tasks they free or make ready go out in its answer,
    /// in the same write).
    pub(crate) fn lease_request_into(
        &mut self,
        step: &mut Step,
        env: Envelope,
        req: LeaseTasks,
        now: Now,
    ) {
        for m in &req.served {
            self.method_seen.insert(m.clone(), now.at);
        }
        let engine: Arc<str> = Arc::from(env.source.as_str());
        for old in self.leases.remove_engine(&engine) {
            step.immediate.push(Effect::Reply {
                to: Box::new(old.env),
                result: lease_reply(&self.settings.id, Vec::new()),
            });
        }
        self.leases.seq += 1;
        let n = self.leases.seq;
        let wait = Duration::from_millis(req.wait_ms).min(MAX_WAIT);
        self.timers.add(later(now.at, wait), Timer::LeaseWait(n));
        self.leases.waiting.push_back(Waiting {
            n,
            env,
            engine,
            slots: req.slots,
        });
        self.serve_into(step, now);
    }

    /// Hands ready tasks to waiting lease requests while they fit.
    pub(crate) fn serve(&mut self, now: Now) -> Step {
        let mut step = Step::default();
        self.serve_into(&mut step, now);
        step
    }

    /// A lease request's wait is over: it is answered with no tasks.
    pub(super) fn lease_wait_over(&mut self, n: u64, step: &mut Step) {
        if let Some(w) = self.leases.remove(n) {
            step.immediate.push(Effect::Reply {
                to: Box::new(w.env),
                result: lease_reply(&self.settings.id, Vec::new()),
            });
        }
    }

    fn serve_into(&mut self, step: &mut Step, now: Now) {
        let mut waiting = VecDeque::new();
        while let Some(lease) = self.leases.waiting.pop_front() {
            if self.queue.is_empty() {
                waiting.push_back(lease);
                continue;
            }
            let picked = {
                let wfs = &self.wfs;
                self.queue.take(&lease.slots, |e| {
                    wfs.get(&e.wf).is_some_and(|wf| {
                        wf.info[e.task].entry == Some(e.seq)
                            && wf.tasks[e.task].status == TaskStatus::Queued
                    })
                })
            };
            if picked.is_empty() {
                waiting.push_back(lease);
                continue;
            }
            let mut tasks = Vec::with_capacity(picked.len());
            let mut file_bytes = 0usize;
            let mut full = false;
            for (route, entry) in picked {
                let key: WfKey = entry.wf.clone();
                let i = entry.task;
                let Some(wf) = self.wfs.get(&key) else {
                    continue;
                };
                let (files, bytes) = task_files(wf, i);
                if full
                    || (!tasks.is_empty() && file_bytes.saturating_add(bytes) > LEASE_FILE_BYTES)
                {
                    // Not in this answer: queued again in its old place (same priority and
                    // arrival number), for the engine's next request.
                    full = true;
                    self.queue.restore(route, entry);
                    continue;
                }
                file_bytes = file_bytes.saturating_add(bytes);
                step.taken.push((route.to_owned(), entry));
                if let Some(task) = self.hand_out(step, &key, i, files, &lease.engine, now) {
                    tasks.push(task);
                }
            }
            step.effects.push(Effect::Reply {
                to: Box::new(lease.env.clone()),
                result: lease_reply(&self.settings.id, tasks),
            });
            // Given back as it came if the step is not stored.
            step.served.push(lease);
        }
        waiting.extend(self.leases.waiting.drain(..));
        self.leases.waiting = waiting;
    }
}

impl Machine {
    /// Moves task `i` of `key` to running on `engine` in `step`: what the engine gets.
    fn hand_out(
        &self,
        step: &mut Step,
        key: &WfKey,
        i: usize,
        files: Vec<TaskFile>,
        engine: &Arc<str>,
        now: Now,
    ) -> Option<Box<RawValue>> {
        let wf = self.wfs.get(key)?;
        let (timeout_ms, base_dir) = (wf.info.get(i)?.timeout_ms, wf.record.base_dir.as_deref());
        let t = self.transition(step, key, i, TaskStatus::Running, now)?;
        // Written as JSON here, from the record: the parameters are not copied first.
        let task = to_raw_value(&ExecuteTaskRef {
            workflow_id: key,
            task_id: &t.task_id,
            attempt: t.attempts,
            method: &t.method,
            params: t.params.as_ref().unwrap_or(&JsonText::null()),
            timeout_ms,
            base_dir,
            files: &files,
        })
        .ok()?;
        if let Some(c) = step.change(key, i) {
            c.engine = Some(engine.clone());
        }
        Some(task)
    }

    /// Hands the tasks `step` makes ready to the lease requests waiting now, in the same
    /// step: one store transaction holds both moves, so the next task of a dependency chain
    /// goes out without a second write and a second trip through the store thread
    /// (`docs/performance.md`, "Where a chain hop's 2.1 ms go"). Only routes with nothing
    /// in the ready queue take part, so the queue's priority order is kept; among the fresh
    /// tasks the best priority goes first, then the order the step made them ready in.
    /// Tasks a fan-out adds in this step wait for the next request.
    pub(crate) fn serve_fresh(&mut self, step: &mut Step, now: Now) {
        if self.leases.is_empty() {
            return;
        }
        let mut fresh: Vec<(u8, WfKey, usize, String)> = Vec::new();
        for (key, i) in step.left_in(TaskStatus::Queued) {
            let Some(info) = self.wfs.get(&key).and_then(|wf| wf.info.get(i)) else {
                continue;
            };
            if info.entry.is_some() {
                continue;
            }
            let Some(route) = step.record(self, &key, i).map(|t| t.route().into_owned()) else {
                continue;
            };
            if self.queue.count(&route) == 0 {
                fresh.push((info.priority, key, i, route));
            }
        }
        if fresh.is_empty() {
            return;
        }
        fresh.sort_by_key(|f| std::cmp::Reverse(f.0));
        let mut waiting = VecDeque::new();
        while let Some(lease) = self.leases.waiting.pop_front() {
            let mut tasks = Vec::new();
            let mut file_bytes = 0usize;
            let mut left = Vec::with_capacity(fresh.len());
            // Slots used per route in this answer (the request's own counts stay as they
            // came, to be given back if the step is not stored).
            let mut used: Vec<(String, u32)> = Vec::new();
            for (prio, key, i, route) in std::mem::take(&mut fresh) {
                let taken = used.iter().position(|(r, _)| *r == route);
                let n = taken.map_or(0, |k| used[k].1);
                let free = lease.slots.get(&route).is_some_and(|&f| f > n);
                let Some(wf) = self.wfs.get(&key).filter(|_| free) else {
                    left.push((prio, key, i, route));
                    continue;
                };
                let (files, bytes) = task_files(wf, i);
                if !tasks.is_empty() && file_bytes.saturating_add(bytes) > LEASE_FILE_BYTES {
                    left.push((prio, key, i, route));
                    continue;
                }
                match taken {
                    Some(k) => used[k].1 += 1,
                    None => used.push((route, 1)),
                }
                file_bytes = file_bytes.saturating_add(bytes);
                if let Some(task) = self.hand_out(step, &key, i, files, &lease.engine, now) {
                    tasks.push(task);
                }
            }
            fresh = left;
            if tasks.is_empty() {
                waiting.push_back(lease);
                continue;
            }
            step.effects.push(Effect::Reply {
                to: Box::new(lease.env.clone()),
                result: lease_reply(&self.settings.id, tasks),
            });
            // Given back as it came if the step is not stored.
            step.served.push(lease);
            if fresh.is_empty() {
                break;
            }
        }
        waiting.extend(self.leases.waiting.drain(..));
        self.leases.waiting = waiting;
    }
}

/// The files task `i` of `wf` names, with their contents, and the bytes of those contents.
fn task_files(wf: &Wf, i: usize) -> (Vec<TaskFile>, usize) {
    let mut bytes = 0usize;
    let files = wf.info[i]
        .files
        .iter()
        .map(|(path, file)| match file {
            FileRef::Attached(key) => {
                let content = wf.attachments.get(key).map(|c| c.to_string());
                bytes = bytes.saturating_add(content.as_ref().map_or(0, String::len));
                TaskFile {
                    path: path.clone(),
                    sha256: Some(key.clone()),
                    content,
                    error: None,
                }
            }
            FileRef::Unreadable { error } => TaskFile {
                path: path.clone(),
                sha256: None,
                content: None,
                error: Some(error.clone()),
            },
        })
        .collect();
    (files, bytes)
}
