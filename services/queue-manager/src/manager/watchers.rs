//! Who watches which workflow, as the hub tells it (`rooms_watched`): a workflow's task
//! events are published only while the room `events` or its room `workflow:<id>` has a
//! watcher somewhere in the mesh; workflow events always are. Until the hub has said
//! anything (an older hub, or none yet since registering), every workflow counts as
//! watched. What is not published stays in the event log, so a watcher that comes later
//! catches up with `workflow_events`.

use std::collections::HashSet;

use gleitzeit_protocol::events::rooms;
use gleitzeit_protocol::payloads::RoomsWatched;

/// The watched event rooms the hub reported.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    /// The hub sent the full list at least once.
    known: bool,
    /// The room `events` (every workflow) has a watcher.
    everything: bool,
    /// Workflows whose `workflow:<id>` room has a watcher.
    workflows: HashSet<String>,
}

impl Watchers {
    /// Applies what the hub reported.
    pub(crate) fn apply(&mut self, news: RoomsWatched) {
        if news.reset {
            self.known = true;
            self.everything = false;
            self.workflows.clear();
        }
        for room in news.unwatched {
            self.set(&room, false);
        }
        for room in news.watched {
            self.set(&room, true);
        }
    }

    fn set(&mut self, room: &str, watched: bool) {
        if room == rooms::EVENTS {
            self.everything = watched;
        } else if let Some(id) = room.strip_prefix(rooms::WORKFLOW_PREFIX) {
            if watched {
                self.workflows.insert(id.to_string());
            } else {
                self.workflows.remove(id);
            }
        }
    }

    /// Does anyone want workflow `wf`'s task events?
    pub(crate) fn want_task_events(&self, wf: &str) -> bool {
        !self.known || self.everything || self.workflows.contains(wf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn news(reset: bool, watched: &[&str], unwatched: &[&str]) -> RoomsWatched {
        RoomsWatched {
            reset,
            watched: watched.iter().map(|s| s.to_string()).collect(),
            unwatched: unwatched.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn everything_is_watched_until_the_hub_says_otherwise() {
        let mut w = Watchers::default();
        assert!(w.want_task_events("a"));
        w.apply(news(true, &["workflow:a"], &[]));
        assert!(w.want_task_events("a"));
        assert!(!w.want_task_events("b"));
        w.apply(news(false, &["events"], &["workflow:a"]));
        assert!(
            w.want_task_events("b"),
            "the events room watches every workflow"
        );
        w.apply(news(false, &[], &["events"]));
        assert!(!w.want_task_events("a") && !w.want_task_events("b"));
        // A reset replaces what was known.
        w.apply(news(false, &["workflow:b", "summary:c"], &[]));
        w.apply(news(true, &["workflow:c"], &[]));
        assert!(!w.want_task_events("b"));
        assert!(w.want_task_events("c"));
    }
}
