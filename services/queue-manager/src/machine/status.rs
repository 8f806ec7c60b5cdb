//! The task life cycle as a table: which status may follow which, the event each move
//! announces, and task counts by status.
//!
//! ```text
//! pending ──▶ queued ──▶ running ──▶ completed
//!               ▲  ▲        │  │
//!               │  └────────┘  └──▶ retrying ──┐
//!               │  (work lost)                  │
//!               └───────────────────────────────┘
//! completed: also from pending (a fan-out template, when its members all completed)
//! failed:    from pending (the resolver could not substitute its parameters), queued (no
//!            provider serves its method), running (the attempt failed for good)
//! skipped:   from pending (a dependency did not complete)
//! cancelled: from any unfinished status (the workflow was cancelled, failed or timed out)
//! ```
//!
//! [`MOVES`] is the whole table; every move in it is taken by a unit test
//! (`every_move_of_the_table_is_taken` in `machine/tests.rs`).

use gleitzeit_protocol::events;
use std::collections::BTreeMap;

use gleitzeit_store::TaskStatus;

/// Every move a task may make, `(from, to)`.
pub(crate) const MOVES: [(TaskStatus, TaskStatus); 15] = {
    use TaskStatus::*;
    [
        (Pending, Queued),
        (Queued, Running),
        // Running: a result, a retry, or its engine lost it (queued again at once).
        (Running, Completed),
        (Running, Retrying),
        (Running, Queued),
        (Retrying, Queued),
        // The resolver could not substitute a pending task's parameters; a queued task's
        // method is served by nobody after the grace; an attempt fails for good.
        (Pending, Failed),
        (Queued, Failed),
        (Running, Failed),
        // The resolver skips a pending task whose dependency did not complete.
        (Pending, Skipped),
        // A fan-out template never runs: it completes when the resolver joins its members.
        (Pending, Completed),
        // A workflow that stops (cancelled, failed, timed out) cancels what is unfinished.
        (Pending, Cancelled),
        (Queued, Cancelled),
        (Running, Cancelled),
        (Retrying, Cancelled),
    ]
};

/// Whether a task may move from `from` to `to` (a move of [`MOVES`]).
pub(crate) fn allowed(from: TaskStatus, to: TaskStatus) -> bool {
    MOVES.contains(&(from, to))
}

/// The task event a move announces.
pub(crate) fn event(from: TaskStatus, to: TaskStatus) -> Option<&'static str> {
    if from == to {
        return None;
    }
    match to {
        TaskStatus::Running => Some(events::TASK_STARTED),
        TaskStatus::Completed => Some(events::TASK_COMPLETED),
        TaskStatus::Failed => Some(events::TASK_FAILED),
        TaskStatus::Retrying => Some(events::TASK_RETRYING),
        TaskStatus::Skipped => Some(events::TASK_SKIPPED),
        TaskStatus::Pending | TaskStatus::Queued | TaskStatus::Cancelled => None,
    }
}

fn slot(s: TaskStatus) -> usize {
    match s {
        TaskStatus::Pending => 0,
        TaskStatus::Queued => 1,
        TaskStatus::Running => 2,
        TaskStatus::Retrying => 3,
        TaskStatus::Completed => 4,
        TaskStatus::Failed => 5,
        TaskStatus::Skipped => 6,
        TaskStatus::Cancelled => 7,
    }
}

/// Tasks by status.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts([usize; 8]);

impl Counts {
    /// Counts the tasks of `tasks` by status.
    #[cfg(test)]
    pub(crate) fn of<'a>(tasks: impl IntoIterator<Item = &'a gleitzeit_store::TaskRecord>) -> Self {
        let mut c = Counts::default();
        for t in tasks {
            c.add(t.status);
        }
        c
    }

    /// One more task in `s`.
    pub(crate) fn add(&mut self, s: TaskStatus) {
        self.0[slot(s)] += 1;
    }

    /// `n` more tasks in `s`.
    pub(crate) fn add_many(&mut self, s: TaskStatus, n: usize) {
        self.0[slot(s)] += n;
    }

    /// One task less in `s`.
    pub(crate) fn remove(&mut self, s: TaskStatus) {
        let n = &mut self.0[slot(s)];
        *n = n.saturating_sub(1);
    }

    /// A task moved from `from` to `to`.
    pub(crate) fn moved(&mut self, from: TaskStatus, to: TaskStatus) {
        let f = &mut self.0[slot(from)];
        *f = f.saturating_sub(1);
        self.0[slot(to)] += 1;
    }

    /// Tasks in `s`.
    pub(crate) fn get(&self, s: TaskStatus) -> usize {
        self.0[slot(s)]
    }

    /// Tasks in a final status.
    pub(crate) fn terminal(&self) -> usize {
        TaskStatus::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| self.get(*s))
            .sum()
    }

    /// The counts as the `counts` of `workflow_get`: `total`, `finished`, one per status.
    pub(crate) fn as_map(self) -> BTreeMap<String, u64> {
        let mut map = BTreeMap::new();
        map.insert("total".into(), self.0.iter().sum::<usize>() as u64);
        for s in TaskStatus::ALL {
            map.insert(s.as_str().into(), self.get(s) as u64);
        }
        map.insert("finished".into(), self.terminal() as u64);
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_tasks_never_move_again() {
        for from in TaskStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for to in TaskStatus::ALL {
                assert!(!allowed(*from, to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn the_table_allows_exactly_the_life_cycle() {
        use TaskStatus::*;
        let allowed_moves: Vec<(TaskStatus, TaskStatus)> = TaskStatus::ALL
            .iter()
            .flat_map(|f| TaskStatus::ALL.iter().map(move |t| (*f, *t)))
            .filter(|(f, t)| allowed(*f, *t))
            .collect();
        assert_eq!(allowed_moves.len(), MOVES.len(), "{allowed_moves:?}");
        assert!(
            allowed(Running, Queued),
            "work lost with its engine is queued again"
        );
        assert!(
            !allowed(Pending, Running),
            "a task is queued before it runs"
        );
        assert!(!allowed(Queued, Completed), "only a running task completes");
        assert!(!allowed(Retrying, Running));
        assert!(
            !allowed(Running, Skipped),
            "only the resolver skips, and only pending tasks"
        );
    }

    #[test]
    fn counts_follow_moves() {
        let mut c = Counts::default();
        c.add(TaskStatus::Pending);
        c.add(TaskStatus::Pending);
        c.moved(TaskStatus::Pending, TaskStatus::Completed);
        assert_eq!(c.get(TaskStatus::Pending), 1);
        assert_eq!(c.terminal(), 1);
        assert_eq!(c.as_map()["finished"], 1);
        assert_eq!(c.as_map()["total"], 2);
    }
}
