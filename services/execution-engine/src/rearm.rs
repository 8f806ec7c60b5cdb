//! Lease requests that wait to go with outcomes.
//!
//! After a lease answer the engine used to send its next `lease_tasks` at once, though
//! while its tasks are out nothing it could ask for is likely to be ready before their
//! outcomes come back (a chain's next task is queued by the very outcome). So while tasks
//! are out, the next request to a queue-manager that takes requests inside `task_outcomes`
//! (capability [`LEASE_WITH_OUTCOMES`]) waits up to [`REARM_WAIT`] and then goes with the
//! outcomes, one message instead of two; past that it goes alone. A wait that ran out with
//! nothing to ask for (no free slot) is dropped, so the loop is never woken for a deadline
//! already past.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// How long the next lease request waits for outcomes to go with. Work that becomes ready
/// meanwhile from elsewhere (a new workflow, a retry) waits at most this long while the
/// engine has tasks out.
pub(crate) const REARM_WAIT: Duration = Duration::from_millis(5);

/// The capability of a queue-manager that takes a lease request inside `task_outcomes`.
pub(crate) const LEASE_WITH_OUTCOMES: &str = "lease_with_outcomes";

/// The waiting requests, and the queue-managers that take them with outcomes.
#[derive(Debug, Default)]
pub(crate) struct Rearm {
    /// Queue-manager → until when its next request waits.
    waiting: HashMap<String, Instant>,
    /// Queue-managers registered with [`LEASE_WITH_OUTCOMES`].
    takers: HashSet<String>,
}

impl Rearm {
    /// The queue-managers that take requests with outcomes (from the component table).
    pub(crate) fn set_takers(&mut self, takers: HashSet<String>) {
        self.takers = takers;
    }

    /// Whether the next request to `target` waits now: tasks are out and `target` takes
    /// requests with outcomes, and the wait (begun now if it had not) has not run out.
    pub(crate) fn waits(&mut self, target: &str, tasks_out: bool, now: Instant) -> bool {
        if !tasks_out || !self.takers.contains(target) {
            self.waiting.remove(target);
            return false;
        }
        let by = *self
            .waiting
            .entry(target.to_string())
            .or_insert(now + REARM_WAIT);
        now < by
    }

    /// Whether a request to `target` is waiting for outcomes.
    pub(crate) fn is_waiting(&self, target: &str) -> bool {
        self.waiting.contains_key(target)
    }

    /// A request to `target` was sent (alone or with outcomes), or `target` left.
    pub(crate) fn forget(&mut self, target: &str) {
        self.waiting.remove(target);
    }

    /// Whether some wait ran out by `now`.
    pub(crate) fn any_due(&self, now: Instant) -> bool {
        self.waiting.values().any(|by| *by <= now)
    }

    /// Drops the waits that ran out by `now` (after the engine sent what it could).
    pub(crate) fn drop_due(&mut self, now: Instant) {
        self.waiting.retain(|_, by| *by > now);
    }

    /// When the next wait runs out.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.waiting.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rearm() -> Rearm {
        let mut r = Rearm::default();
        r.set_takers(["qm-1".to_string()].into_iter().collect());
        r
    }

    #[test]
    fn a_request_waits_for_outcomes_only_while_tasks_are_out_and_only_so_long() {
        let mut r = rearm();
        let t0 = Instant::now();
        assert!(
            !r.waits("qm-1", false, t0),
            "no task out: nothing to wait for"
        );
        assert!(r.waits("qm-1", true, t0));
        assert!(r.is_waiting("qm-1"));
        assert_eq!(r.next_due(), Some(t0 + REARM_WAIT));
        assert!(r.waits("qm-1", true, t0 + REARM_WAIT / 2), "still waiting");
        assert!(!r.any_due(t0 + REARM_WAIT / 2));
        assert!(
            !r.waits("qm-1", true, t0 + REARM_WAIT),
            "ran out: it goes alone"
        );
        r.forget("qm-1");
        assert!(!r.is_waiting("qm-1"));
        assert_eq!(r.next_due(), None);
    }

    #[test]
    fn a_queue_manager_that_does_not_take_them_is_never_kept_waiting() {
        let mut r = rearm();
        let now = Instant::now();
        assert!(!r.waits("qm-old", true, now));
        assert!(!r.waits("", true, now), "any queue-manager (no id known)");
        assert_eq!(r.next_due(), None);
    }

    #[test]
    fn waits_that_ran_out_are_dropped_so_nothing_wakes_for_them_again() {
        let mut r = rearm();
        let t0 = Instant::now();
        assert!(r.waits("qm-1", true, t0));
        assert!(r.any_due(t0 + REARM_WAIT));
        r.drop_due(t0 + REARM_WAIT);
        assert_eq!(r.next_due(), None);
        assert!(!r.any_due(t0 + REARM_WAIT * 10));
    }
}
