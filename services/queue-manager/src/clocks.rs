//! Other machines' clocks, as seen from this queue-manager.
//!
//! Two decisions depend on how old a message is: a lease request that waited here longer
//! than its engine waits for the answer is not served, and a `tasks_held` report only
//! speaks for attempts handed out before it was sent. Envelopes carry the sender's clock
//! (`ts`), and clocks of different machines disagree. So each sender's offset is estimated
//! as the smallest `local now - ts` seen from it recently: the offset plus the fastest
//! delivery. A message's age is then `local now - ts - offset`, whatever the skew.
//!
//! The minimum is kept over two rotating windows of [`WINDOW`], so the estimate follows
//! drift and forgets a stall. A sender's first message has age 0 by definition: a queue
//! that stalled before anything was heard from a sender may serve a request its engine gave
//! up on, which the held-task reports then recover.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Length of one window of the running minimum.
const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Offset {
    current: i64,
    previous: i64,
    since: Instant,
}

impl Offset {
    fn best(&self) -> i64 {
        self.current.min(self.previous)
    }
}

/// Offsets of senders' clocks, by component id.
#[derive(Debug, Default)]
pub(crate) struct Clocks {
    offsets: HashMap<String, Offset>,
}

impl Clocks {
    /// Records a message of `source` stamped `ts` (sender ms) and received at `now` (local
    /// ms). Returns its age in milliseconds, corrected for the sender's clock.
    pub(crate) fn age(&mut self, source: &str, ts: u64, now: u64) -> u64 {
        let seen = now as i64 - ts as i64;
        let at = Instant::now();
        // Looked up before inserting: this runs for every lease request.
        if !self.offsets.contains_key(source) {
            let first = Offset {
                current: seen,
                previous: seen,
                since: at,
            };
            self.offsets.insert(source.to_string(), first);
        }
        let Some(entry) = self.offsets.get_mut(source) else {
            return 0;
        };
        if at.duration_since(entry.since) >= WINDOW {
            entry.previous = entry.current;
            entry.current = seen;
            entry.since = at;
        } else {
            entry.current = entry.current.min(seen);
        }
        (seen - entry.best()).max(0) as u64
    }

    /// A sender's time `ts` on the local clock (ms), or `ts` itself before any message of
    /// the sender was seen.
    pub(crate) fn to_local(&self, source: &str, ts: u64) -> u64 {
        match self.offsets.get(source) {
            Some(o) => (ts as i64 + o.best()).max(0) as u64,
            None => ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skewed_clock_does_not_make_fresh_messages_old() {
        let mut c = Clocks::default();
        // The engine's clock is 20 s behind: its messages look 20 s old on the raw clock.
        let skew = 20_000;
        assert_eq!(c.age("ee", 1_000_000 - skew, 1_000_003), 0);
        assert_eq!(c.age("ee", 1_001_000 - skew, 1_001_002), 0);
        // One that waited 6 s in this queue-manager's inbox is 6 s old.
        let age = c.age("ee", 1_002_000 - skew, 1_008_003);
        assert!((5_999..=6_001).contains(&age), "{age}");
        // Its report time on the local clock.
        let local = c.to_local("ee", 1_002_000 - skew);
        assert!((1_002_000..=1_002_003).contains(&local), "{local}");
    }

    #[test]
    fn a_clock_ahead_works_the_same() {
        let mut c = Clocks::default();
        assert_eq!(c.age("ee", 2_000_000, 1_000_001), 0);
        assert_eq!(c.age("ee", 2_000_010, 1_005_011), 5_000);
        assert_eq!(c.to_local("other", 42), 42);
    }
}
