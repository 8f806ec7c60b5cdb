//! How far ahead the engine sends tasks to a provider: adaptive prefetch.
//!
//! Tasks sent ahead of a provider's free slots wait in its own queue, which hides the round
//! trip to the queue-manager: without them a provider idles from one task's end until the
//! next arrives. But every task waiting there is one a newer, more urgent task cannot
//! overtake, and one that no other provider can take. How many are worth it depends on how
//! long the provider's tasks take: trivial Python tasks (well under a millisecond) need
//! hundreds ahead to keep two workers busy, while LLM calls of seconds need one.
//!
//! So each provider's depth (tasks per unit of capacity, the one running included) follows
//! the time its tasks take, as the provider reports it (`finished_at − started_at`: the run,
//! not the wait in its queue), smoothed over recent outcomes: enough tasks to cover
//! [`AHEAD`] of its work per slot, at least 2 (one running, one waiting), at most the
//! engine's `--prefetch` (so `--prefetch 1` still gives strict priority order). Until a
//! provider reported its first outcome the depth is 2.

use std::time::Duration;

/// The work kept waiting at a provider per unit of its capacity.
pub(crate) const AHEAD: Duration = Duration::from_millis(25);

/// The depth before any outcome was seen.
const FIRST_DEPTH: u32 = 2;

/// Weight of a new sample in the moving average.
const ALPHA: f64 = 0.2;

/// Shortest mean the depth is worked out from (task times come in whole milliseconds; a
/// mean of 0 would ask for unbounded depth).
const FLOOR_MS: f64 = 0.05;

/// The smoothed time a provider's tasks take.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pace {
    mean_ms: Option<f64>,
}

impl Pace {
    /// Counts one task that ran for `ms` milliseconds.
    pub(crate) fn record(&mut self, ms: u64) {
        let ms = ms as f64;
        self.mean_ms = Some(match self.mean_ms {
            Some(mean) => mean + ALPHA * (ms - mean),
            None => ms,
        });
    }

    /// Tasks per unit of capacity to keep at the provider, at most `max` (at least 1).
    pub(crate) fn depth(&self, max: u32) -> u32 {
        let max = max.max(1);
        let Some(mean) = self.mean_ms else {
            return FIRST_DEPTH.min(max);
        };
        let waiting = (AHEAD.as_secs_f64() * 1_000.0 / mean.max(FLOOR_MS)).ceil();
        // `as` saturates: a huge ratio becomes u32::MAX, then the cap.
        let depth = 1u32.saturating_add(waiting as u32);
        depth.clamp(FIRST_DEPTH.min(max), max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_follows_how_long_tasks_take() {
        let mut pace = Pace::default();
        assert_eq!(pace.depth(128), 2, "nothing known yet");
        pace.record(0);
        assert_eq!(pace.depth(128), 128, "trivial tasks: as deep as allowed");
        let mut llm = Pace::default();
        llm.record(3_000);
        assert_eq!(
            llm.depth(128),
            2,
            "seconds-long tasks: one running, one waiting"
        );
        let mut ms = Pace::default();
        ms.record(5);
        assert_eq!(
            ms.depth(128),
            6,
            "25 ms of 5 ms tasks waiting, plus the one running"
        );
    }

    #[test]
    fn the_mean_moves_with_recent_tasks() {
        let mut pace = Pace::default();
        pace.record(1_000);
        for _ in 0..40 {
            pace.record(0);
        }
        assert_eq!(pace.depth(64), 64, "the slow start is forgotten");
        for _ in 0..40 {
            pace.record(2_000);
        }
        assert_eq!(pace.depth(64), 2);
    }

    #[test]
    fn the_cap_is_kept_and_one_means_one() {
        let mut pace = Pace::default();
        assert_eq!(pace.depth(1), 1);
        assert_eq!(pace.depth(0), 1, "never nothing");
        pace.record(0);
        assert_eq!(pace.depth(1), 1);
        assert_eq!(pace.depth(u32::MAX), 1 + (25.0 / FLOOR_MS) as u32);
        pace.record(u64::MAX);
        assert_eq!(pace.depth(16), 2);
    }
}
