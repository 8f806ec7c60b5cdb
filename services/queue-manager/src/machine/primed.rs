//! Primed tasks: the resolver names tasks that wait for one last dependency, already
//! released, with their parameters ([`Resolution::primed`]). When that dependency
//! completes, the outcome's step queues them at once, substituting the dependency's result
//! into their parameters as the resolver would, so a chain's next task goes out in the same
//! store write as the end of the one before it, without waiting for the resolver's answer.
//!
//! The resolver still hears of the completion and reports the task ready; that report
//! finds it queued and changes nothing. A prime whose dependency has already ended, or
//! whose substitution fails here, is dropped: the resolver decides those as before (it has
//! heard, or will hear, of the dependency's end). Primes live in memory only: a workflow
//! taken over or a resolver restarted plans again, and the new plan primes again.
//!
//! Along a chain the resolver primes several links ahead (`dependency-resolver`,
//! `PRIME_DEPTH`), so the end of a task whose dependents all ran on their primes tells the
//! resolver nothing it needs at once: such ends are kept back ([`Wf::untold`]) and told
//! [`TELL_EVERY`] at a time, or with the next end that is not covered so (a failure, a
//! task without primes), whichever comes first — two hub messages a hop become two per four
//! hops, and each report moves the primed stretch on well before the chain reaches its end.
//! A new plan carries every end, told or not, and clears the list. Until a workflow's
//! plan is answered, every end is kept back so ([`Wf::planned`]) and told with that answer.

use gleitzeit_protocol::payloads::{FinishedTask, Resolution};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_store::TaskStatus;
use gleitzeit_workflow::substitute;
use serde_json::Value;

use super::{step, Machine, Now, Step, WfKey};

/// A task's end for the resolver, with the tasks primed on it when they were all its
/// dependents ([`Machine::prime_cover`]).
pub(crate) type End = (FinishedTask, Option<Vec<usize>>);

/// Ends covered by primes told to the resolver together (half of the resolver's
/// `PRIME_DEPTH`: the stretch it primes ahead).
pub(crate) const TELL_EVERY: usize = 4;

impl Machine {
    /// Keeps the primes of `res` for workflow `id` (their dependency still to complete).
    pub(crate) fn keep_primes(&mut self, id: &str, res: &mut Resolution) {
        let primes = std::mem::take(&mut res.primed);
        let Some(wf) = self.wfs.get_mut(id) else {
            return;
        };
        for p in primes {
            let (Some(after), Some(task)) = (wf.position(&p.after), wf.position(&p.task_id)) else {
                continue;
            };
            let waits = !wf.tasks[after].status.is_terminal()
                && wf.tasks[task].status == TaskStatus::Pending;
            if !waits {
                continue;
            }
            let list = wf.primed.entry(after).or_default();
            if list.iter().all(|(t, _)| *t != task) {
                list.push((task, p.params));
            }
        }
    }

    /// When `record` completes task `change.i` and every task depending on it is primed on
    /// it: those tasks (whether they were queued is known only after the commit).
    pub(super) fn prime_cover(
        &self,
        change: &step::Change,
        record: &gleitzeit_store::TaskRecord,
    ) -> Option<Vec<usize>> {
        if record.status != TaskStatus::Completed {
            return None;
        }
        let wf = self.wfs.get(&change.wf)?;
        let need = usize::from(wf.info.get(change.i)?.dependents);
        let primed = wf.primed.get(&change.i)?;
        (need > 0 && primed.len() >= need).then(|| primed.iter().map(|(t, _)| *t).collect())
    }

    /// What of a commit's ends to tell `key`'s resolver now, with those kept back before
    /// (see the module docs); `None` keeps them all back.
    pub(super) fn ends_to_tell(
        &mut self,
        key: &WfKey,
        ends: Vec<End>,
    ) -> Option<Vec<FinishedTask>> {
        let wf = self.wfs.get_mut(key)?;
        if !wf.planned {
            wf.untold.extend(ends.into_iter().map(|(end, _)| end));
            return None;
        }
        let covered = ends.iter().all(|(_, cover)| {
            cover.as_ref().is_some_and(|tasks| {
                tasks.iter().all(|&t| {
                    wf.tasks
                        .get(t)
                        .is_some_and(|r| r.status != TaskStatus::Pending)
                })
            })
        });
        let mut list = std::mem::take(&mut wf.untold);
        list.extend(ends.into_iter().map(|(end, _)| end));
        if covered && list.len() < TELL_EVERY {
            wf.untold = list;
            return None;
        }
        Some(list)
    }

    /// A resolver answered the plan of `key`: the ends kept back until then, to tell it
    /// now (`None` when it was planned before, or nothing ended meanwhile).
    pub(super) fn planned(&mut self, key: &WfKey) -> Option<Vec<FinishedTask>> {
        let wf = self.wfs.get_mut(key).filter(|wf| !wf.planned)?;
        wf.planned = true;
        Some(std::mem::take(&mut wf.untold)).filter(|held| !held.is_empty())
    }

    /// A new plan of `id` carries every end: nothing is kept back any more.
    pub(crate) fn forget_untold(&mut self, id: &str) {
        if let Some(wf) = self.wfs.get_mut(id) {
            wf.untold = Vec::new();
        }
    }

    /// Task `i` of `key` completes in `step` (with its result in the step's record):
    /// the tasks primed on it are queued, their parameters substituted.
    pub(super) fn fire_primes(&self, step: &mut Step, key: &WfKey, i: usize, now: Now) {
        let Some(wf) = self.wfs.get(key) else {
            return;
        };
        let Some(primed) = wf.primed.get(&i) else {
            return;
        };
        if wf.record.status.is_terminal() {
            return;
        }
        for (task, params) in primed {
            if let Some(params) = self.primed_params(step, key, i, params) {
                self.queue_ready(step, key, *task, params, now);
            }
        }
    }

    /// Queues task `i` of `key`, ready with `params`, if it is still pending.
    pub(super) fn queue_ready(
        &self,
        step: &mut Step,
        key: &WfKey,
        i: usize,
        params: JsonText,
        now: Now,
    ) {
        if step.status(self, key, i) != Some(TaskStatus::Pending) {
            return;
        }
        if let Some(t) = self.transition(step, key, i, TaskStatus::Queued, now) {
            t.params = Some(params);
        }
    }

    /// `params` with references to task `i` (by id or name) replaced by its result in
    /// `step`; `None` when another reference is met or the substitution fails.
    fn primed_params(
        &self,
        step: &Step,
        key: &WfKey,
        i: usize,
        params: &Value,
    ) -> Option<JsonText> {
        let done = step.record(self, key, i)?;
        let result = done.result.as_ref()?.to_value();
        let lookup = |k: &str| -> Option<&Value> {
            (k == &*done.task_id || k == &*done.name).then_some(&result)
        };
        substitute(params, &lookup)
            .ok()
            .map(|p| JsonText::of_value(&p))
    }
}
