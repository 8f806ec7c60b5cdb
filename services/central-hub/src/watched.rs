//! Which event rooms have watchers anywhere in the mesh, and what this hub's
//! queue-managers were last told of it (`rooms_watched`).
//!
//! A queue-manager publishes a workflow's task events only while `events` or the
//! workflow's `workflow:<id>` room has a watcher: a workflow nobody watches costs no
//! event messages, and a `gz run` that shows a bar or a summary watches `summary:<id>`,
//! which gets the workflow's own events only. The hub knows the rooms (its own sockets'
//! and, through their snapshots, the other hubs'), so it tells its queue-managers when a
//! room gains its first watcher or loses its last one.
//!
//! Ordering is what makes this safe: a watcher's `subscribe` is handled (and the change
//! queued for the queue-managers on their sockets) before its next message, usually its
//! `workflow_events` catch-up, is relayed; the queue-manager reads both in that order, and
//! it decides per batch when it sends, not when an event is made. A watcher that still
//! sees a gap in the `seq`s (a change that crossed the mesh slower than its catch-up)
//! asks again for what it missed.
//!
//! Pure data (no sockets): the registry calls [`Watched::touch`] with each room that may
//! have changed, and the hub sends what [`Watched::changes`] returns.

use std::collections::HashSet;

use gleitzeit_protocol::events::rooms;
use gleitzeit_protocol::payloads::RoomsWatched;

/// What this hub told its queue-managers, and the rooms that may have changed since.
#[derive(Debug, Default)]
pub struct Watched {
    /// Rooms the queue-managers were told have watchers.
    told: HashSet<String>,
    /// Rooms whose watchers changed since the last [`Watched::changes`].
    touched: HashSet<String>,
}

impl Watched {
    /// `room` gained or lost a watcher somewhere (rooms without task events are ignored).
    pub fn touch(&mut self, room: &str) {
        if rooms::carries_task_events(room) && !self.touched.contains(room) {
            self.touched.insert(room.to_string());
        }
    }

    /// The rooms touched since the last call whose state differs from what was told,
    /// given whether each is watched now; `None` when there is nothing to tell.
    pub fn changes(&mut self, watched_now: impl Fn(&str) -> bool) -> Option<RoomsWatched> {
        if self.touched.is_empty() {
            return None;
        }
        let mut change = RoomsWatched::default();
        for room in std::mem::take(&mut self.touched) {
            let now = watched_now(&room);
            if now && !self.told.contains(&room) {
                self.told.insert(room.clone());
                change.watched.push(room);
            } else if !now && self.told.remove(&room) {
                change.unwatched.push(room);
            }
        }
        if change.watched.is_empty() && change.unwatched.is_empty() {
            return None;
        }
        change.watched.sort();
        change.unwatched.sort();
        Some(change)
    }

    /// Everything told so far, for a queue-manager that just registered (call
    /// [`Watched::changes`] first).
    pub fn all(&self) -> RoomsWatched {
        let mut watched: Vec<String> = self.told.iter().cloned().collect();
        watched.sort();
        RoomsWatched {
            reset: true,
            watched,
            unwatched: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_first_watcher_and_last_one_gone_once() {
        let mut w = Watched::default();
        let mut members: HashSet<&str> = HashSet::new();
        members.insert("workflow:a");
        w.touch("workflow:a");
        let c = w.changes(|r| members.contains(r)).expect("a change");
        assert_eq!(c.watched, vec!["workflow:a"]);
        assert!(c.unwatched.is_empty() && !c.reset);
        // Touched again with no change: nothing to tell.
        w.touch("workflow:a");
        assert!(w.changes(|r| members.contains(r)).is_none());
        members.clear();
        w.touch("workflow:a");
        let c = w.changes(|r| members.contains(r)).expect("a change");
        assert_eq!(c.unwatched, vec!["workflow:a"]);
        assert!(w.all().watched.is_empty());
    }

    #[test]
    fn only_rooms_with_task_events_count() {
        let mut w = Watched::default();
        for room in ["summary:a", "components", "events", "workflow:b"] {
            w.touch(room);
        }
        let c = w.changes(|_| true).expect("a change");
        assert_eq!(c.watched, vec!["events", "workflow:b"]);
        let all = w.all();
        assert!(all.reset);
        assert_eq!(all.watched, vec!["events", "workflow:b"]);
    }
}
