//! Engines and their leases. Everything an engine sends (a lease request, outcomes, a
//! held-task report) extends the leases on the tasks it holds; an engine silent for the
//! lease timeout, one the hub says has left, and tasks missing from two held-task reports
//! in a row lose their lease: the task is queued again (its work may run twice:
//! at-least-once; only one result is recorded).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::payloads::HeldTasks;
use gleitzeit_store::TaskStatus;
use tokio::time::Instant;
use tracing::warn;

use super::timers::{Timer, Timers};
use super::{Machine, Now, Step, WfKey};

/// A pause of the queue-manager itself longer than this (a store outage, overload) is not
/// held against the engines: their leases start afresh.
const STALL: Duration = Duration::from_secs(2);
/// Only attempts handed out this long before a held-task report was sent can be missing
/// from it.
const REPORT_MARGIN_MS: u64 = 1_000;

/// One engine holding tasks.
#[derive(Debug)]
struct Engine {
    /// When it last sent something.
    seen: Instant,
    /// The tasks it runs.
    running: HashSet<(WfKey, usize)>,
    /// Its silence timer is set.
    armed: bool,
}

/// Engines that hold (or held) tasks.
#[derive(Debug, Default)]
pub(crate) struct Engines {
    map: HashMap<Arc<str>, Engine>,
}

impl Engines {
    /// `engine` runs task `i` of `wf` from now on.
    pub(crate) fn hold(
        &mut self,
        engine: &Arc<str>,
        wf: WfKey,
        i: usize,
        now: Instant,
        timeout: Duration,
        timers: &mut Timers,
    ) {
        let e = self.map.entry(engine.clone()).or_insert(Engine {
            seen: now,
            running: HashSet::new(),
            armed: false,
        });
        e.running.insert((wf, i));
        if !e.armed {
            e.armed = true;
            timers.add(
                super::later(e.seen, timeout),
                Timer::Silence(engine.clone()),
            );
        }
    }

    /// `engine` no longer runs task `i` of `wf`.
    pub(crate) fn release(&mut self, engine: &str, wf: &WfKey, i: usize) {
        if let Some(e) = self.map.get_mut(engine) {
            e.running.remove(&(wf.clone(), i));
        }
    }

    /// Tasks `engine` runs.
    fn running(&self, engine: &str) -> Vec<(WfKey, usize)> {
        self.map
            .get(engine)
            .map(|e| e.running.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Machine {
    /// Something came from `engine`: its leases are extended.
    pub(crate) fn engine_heard(&mut self, engine: &str, now: Now) {
        if let Some(e) = self.engines.map.get_mut(engine) {
            e.seen = now.at;
        }
    }

    /// The hub says `engine` left: the tasks it ran are queued again, without using up
    /// their retry policy, and its waiting lease requests are dropped.
    pub(crate) fn engine_lost(&mut self, engine: &str, now: Now) -> Step {
        self.leases.remove_engine(engine);
        let mut step = Step::default();
        let n = self.requeue(&mut step, engine, now, |_, _| true);
        if n > 0 {
            warn!(
                engine,
                tasks = n,
                "engine left with tasks in flight; they are queued again"
            );
        }
        step
    }

    /// `engine` reported what it holds (`sent_at`: when, in this machine's wall clock):
    /// its running tasks missing from two reports in a row were lost on the way (a lease
    /// reply or an outcome dropped) and are queued again.
    pub(crate) fn held_report(
        &mut self,
        engine: &str,
        sent_at: u64,
        held: HeldTasks,
        now: Now,
    ) -> Step {
        let held: HashSet<(String, String, u32)> = held
            .tasks
            .into_iter()
            .map(|t| (t.workflow_id, t.task_id, t.attempt))
            .collect();
        let mut step = Step::default();
        let n = self.requeue(&mut step, engine, now, |t, missed| {
            if t.started_at
                .unwrap_or(u64::MAX)
                .saturating_add(REPORT_MARGIN_MS)
                > sent_at
            {
                return false;
            }
            if held.contains(&(t.workflow_id.to_string(), t.task_id.to_string(), t.attempts)) {
                *missed = 0;
                false
            } else {
                *missed = missed.saturating_add(1);
                *missed >= 2
            }
        });
        if n > 0 {
            warn!(
                engine,
                tasks = n,
                "tasks lost between engine and queue-manager; they are queued again"
            );
        }
        step
    }

    /// An engine's silence timer fired: if it has been silent for the lease timeout, its
    /// tasks are queued again; otherwise the timer is set for its new deadline.
    pub(super) fn silence_check(&mut self, engine: &Arc<str>, step: &mut Step, now: Now) {
        let timeout = self.settings.lease_timeout;
        let Some(e) = self.engines.map.get_mut(engine) else {
            return;
        };
        e.armed = false;
        if e.running.is_empty() {
            self.engines.map.remove(engine);
            return;
        }
        let silent = now.at.duration_since(e.seen);
        e.armed = true;
        if silent < timeout {
            self.timers.add(
                super::later(e.seen, timeout),
                Timer::Silence(engine.clone()),
            );
            return;
        }
        // Checked again after the requeue is stored (or if it is not).
        self.timers.add(
            super::later(now.at, timeout),
            Timer::Silence(engine.clone()),
        );
        let n = self.requeue(step, engine, now, |_, _| true);
        if n > 0 {
            warn!(engine = %engine, tasks = n, ?silent, "engine silent beyond the lease timeout; its tasks are queued again");
        }
    }

    /// This queue-manager itself stalled: every engine's silence starts now.
    pub(super) fn stalled(&mut self, now: Now) {
        if now.at.duration_since(self.last_tick) > STALL {
            for e in self.engines.map.values_mut() {
                e.seen = now.at;
            }
        }
        self.last_tick = now.at;
    }

    /// Proposes queueing again the running tasks of `engine` for which `lost` says so
    /// (it may count the reports a task was missing from); returns how many.
    fn requeue(
        &mut self,
        step: &mut Step,
        engine: &str,
        now: Now,
        mut lost: impl FnMut(&gleitzeit_store::TaskRecord, &mut u16) -> bool,
    ) -> usize {
        let mut n = 0;
        for (key, i) in self.engines.running(engine) {
            let Some(wf) = self.wfs.get_mut(&key) else {
                continue;
            };
            let (Some(t), Some(info)) = (wf.tasks.get(i), wf.info.get_mut(i)) else {
                continue;
            };
            if t.status != TaskStatus::Running || info.engine.as_deref() != Some(engine) {
                continue;
            }
            // `missed` is an observation, not state the store keeps.
            if !lost(t, &mut info.missed) {
                continue;
            }
            if self
                .transition(step, &key, i, TaskStatus::Queued, now)
                .is_some()
            {
                n += 1;
            }
        }
        n
    }
}
