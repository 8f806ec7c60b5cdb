//! Pending deadlines in time order: a retry's pause, a workflow's timeout, a long-poll lease
//! request's wait, an engine's silence. A timer that no longer applies when it fires (the
//! task moved on, the workflow ended, the engine spoke) is checked and dropped by whoever
//! handles it, so nothing is ever searched to cancel a timer.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::time::Instant;

use super::WfKey;

/// What is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Task `i` of a workflow may be queued again (its attempt number when it failed).
    Retry(WfKey, usize, u32),
    /// A workflow's timeout.
    Deadline(WfKey),
    /// A waiting lease request (by its number) gets an empty answer.
    LeaseWait(u64),
    /// An engine may have been silent for the lease timeout.
    Silence(Arc<str>),
}

/// Timers by due time (ties in the order they were set).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    due: BTreeMap<(Instant, u64), Timer>,
    seq: u64,
}

impl Timers {
    /// Sets `timer` for `at`.
    pub(crate) fn add(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.due.insert((at, self.seq), timer);
    }

    /// Takes the timers due at `now`, earliest first.
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Timer> {
        let mut out = Vec::new();
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        out
    }

    /// When the next timer is due.
    #[cfg(test)]
    pub(crate) fn next(&self) -> Option<Instant> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// How many timers are set.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.due.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_time_order() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.add(t0 + Duration::from_secs(2), Timer::LeaseWait(2));
        timers.add(t0 + Duration::from_secs(1), Timer::LeaseWait(1));
        timers.add(t0 + Duration::from_secs(1), Timer::LeaseWait(3));
        assert!(timers.due(t0).is_empty());
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            timers.due(t0 + Duration::from_secs(1)),
            [Timer::LeaseWait(1), Timer::LeaseWait(3)]
        );
        assert_eq!(
            timers.due(t0 + Duration::from_secs(5)),
            [Timer::LeaseWait(2)]
        );
        assert_eq!(timers.len(), 0);
    }
}
