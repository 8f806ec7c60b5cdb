//! The `served` list of lease requests: every method this engine has a provider for.
//!
//! A queue-manager fails queued tasks of a method no engine has offered within its provider
//! grace (GZ2015), so it must hear the list regularly; but a chain asks for tasks twice per
//! hop, and the list (~100 methods with the built-in functions) was half of every request.
//! So a request carries the list when it changed since the last one to that queue-manager,
//! or when it was last sent [`SERVED_EVERY`] ago, and an empty list otherwise (the
//! queue-manager keeps what it heard: `docs/protocol.md`, `lease_tasks`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an unchanged list is sent again (well within the shortest provider grace a
/// deployment uses; an idle engine asks about once a second anyway).
pub(crate) const SERVED_EVERY: Duration = Duration::from_millis(250);

/// What each queue-manager (by lease target) last heard, and when.
#[derive(Debug, Default)]
pub(crate) struct ServedNews {
    sent: HashMap<String, (Instant, Vec<Arc<str>>)>,
}

impl ServedNews {
    /// The `served` list for a request to `target` now: `methods` when it is news, else
    /// empty.
    pub(crate) fn for_request(
        &mut self,
        target: &str,
        methods: Vec<Arc<str>>,
        now: Instant,
    ) -> Vec<Arc<str>> {
        let news = self.sent.get(target).is_none_or(|(at, sent)| {
            *sent != methods || now.saturating_duration_since(*at) >= SERVED_EVERY
        });
        if !news {
            return Vec::new();
        }
        self.sent.insert(target.to_string(), (now, methods.clone()));
        methods
    }

    /// Forgets a queue-manager (it left): a new one of that id hears the list at once.
    pub(crate) fn forget(&mut self, target: &str) {
        self.sent.remove(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(methods: &[&str]) -> Vec<Arc<str>> {
        methods.iter().map(|m| Arc::from(*m)).collect()
    }

    #[test]
    fn the_list_goes_out_when_it_is_news_and_regularly() {
        let mut news = ServedNews::default();
        let t0 = Instant::now();
        let ab = list(&["a", "b"]);
        assert_eq!(
            news.for_request("qm-1", ab.clone(), t0),
            ab,
            "first request"
        );
        assert!(
            news.for_request("qm-1", ab.clone(), t0).is_empty(),
            "unchanged"
        );
        assert_eq!(
            news.for_request("qm-2", ab.clone(), t0),
            ab,
            "each queue-manager hears it"
        );
        let abc = list(&["a", "b", "c"]);
        assert_eq!(news.for_request("qm-1", abc.clone(), t0), abc, "changed");
        let later = t0 + SERVED_EVERY / 2;
        assert!(news.for_request("qm-1", abc.clone(), later).is_empty());
        let due = t0 + SERVED_EVERY;
        assert_eq!(
            news.for_request("qm-1", abc.clone(), due),
            abc,
            "again when due"
        );
        news.forget("qm-1");
        assert_eq!(
            news.for_request("qm-1", abc.clone(), due),
            abc,
            "after forget"
        );
    }
}
