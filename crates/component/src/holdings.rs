//! What a provider holds: the task attempts it was handed, by the engine that sent them,
//! each with a handle to stop it. Providers report these every couple of seconds
//! (`tasks_held`), so an engine learns about attempts lost on the way.
//!
//! The engines remembered are bounded: an engine holding nothing here is reported to (with
//! an empty list, so it learns its attempts are gone) for [`ENGINE_IDLE_EXPIRY`] after its
//! last task, then forgotten, and at most [`MAX_IDLE_ENGINES`] such engines are kept (the
//! longest idle are forgotten first). Many senders of `execute_tasks` therefore never turn
//! into a permanent flood of reports.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use gleitzeit_protocol::payloads::{HeldTask, TaskRef};

/// How long an engine that holds nothing here is still sent (empty) reports.
pub const ENGINE_IDLE_EXPIRY: Duration = Duration::from_secs(60);
/// The most engines holding nothing here that are remembered at once.
pub const MAX_IDLE_ENGINES: usize = 64;

struct Held<H> {
    attempt: u32,
    engine: String,
    handle: H,
}

/// Held attempts with a stop handle `H` (a cancel sender, an abort handle).
pub struct Holdings<H> {
    tasks: HashMap<TaskRef, Held<H>>,
    /// Engines that sent tasks, with when they last had one held here.
    engines: HashMap<String, Instant>,
    max_idle_engines: usize,
    idle_expiry: Duration,
}

impl<H> Default for Holdings<H> {
    fn default() -> Self {
        Holdings::with_limits(MAX_IDLE_ENGINES, ENGINE_IDLE_EXPIRY)
    }
}

impl<H> Holdings<H> {
    /// Holdings that remember at most `max_idle_engines` engines holding nothing, each for
    /// `idle_expiry` after its last task.
    pub fn with_limits(max_idle_engines: usize, idle_expiry: Duration) -> Self {
        Holdings {
            tasks: HashMap::new(),
            engines: HashMap::new(),
            max_idle_engines,
            idle_expiry,
        }
    }

    /// Records an attempt handed over by `engine` (a newer attempt replaces an older one,
    /// whose handle is returned to stop it).
    pub fn insert(&mut self, task: TaskRef, attempt: u32, engine: &str, handle: H) -> Option<H> {
        self.insert_at(Instant::now(), task, attempt, engine, handle)
    }

    fn insert_at(
        &mut self,
        now: Instant,
        task: TaskRef,
        attempt: u32,
        engine: &str,
        handle: H,
    ) -> Option<H> {
        match self.engines.get_mut(engine) {
            Some(seen) => *seen = now,
            None => {
                self.engines.insert(engine.to_string(), now);
            }
        }
        self.tasks
            .insert(
                task,
                Held {
                    attempt,
                    engine: engine.to_string(),
                    handle,
                },
            )
            .map(|old| old.handle)
    }

    /// Takes a task out (whatever its attempt) to stop it.
    pub fn take(&mut self, task: &TaskRef) -> Option<H> {
        self.tasks.remove(task).map(|h| h.handle)
    }

    /// The attempt finished: forget it, unless a newer attempt took its place. True if it
    /// was still held (not cancelled, replaced or given up since), i.e. its outcome is due.
    pub fn finish(&mut self, task: &TaskRef, attempt: u32) -> bool {
        if self.tasks.get(task).is_some_and(|h| h.attempt == attempt) {
            self.tasks.remove(task);
            return true;
        }
        false
    }

    /// How many attempts are held.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Takes every held attempt out (to give them up): task, attempt, engine and handle.
    pub fn take_all(&mut self) -> Vec<(TaskRef, u32, String, H)> {
        self.tasks
            .drain()
            .map(|(task, h)| (task, h.attempt, h.engine, h.handle))
            .collect()
    }

    /// How many engines are remembered (holding tasks here or recently idle).
    pub fn engines_remembered(&self) -> usize {
        self.engines.len()
    }

    /// Per engine remembered, the attempts held for it (possibly none). Engines idle beyond
    /// the expiry, or beyond the limit on idle engines, are forgotten here.
    pub fn report(&mut self) -> Vec<(String, Vec<HeldTask>)> {
        self.report_at(Instant::now())
    }

    fn report_at(&mut self, now: Instant) -> Vec<(String, Vec<HeldTask>)> {
        let mut out: HashMap<String, Vec<HeldTask>> = HashMap::new();
        for (key, h) in &self.tasks {
            out.entry(h.engine.clone()).or_default().push(HeldTask {
                workflow_id: key.workflow_id.clone(),
                task_id: key.task_id.clone(),
                attempt: h.attempt,
            });
        }
        for engine in out.keys() {
            self.engines.insert(engine.clone(), now);
        }
        let expiry = self.idle_expiry;
        self.engines
            .retain(|e, seen| out.contains_key(e) || now.saturating_duration_since(*seen) < expiry);
        let mut idle: Vec<(Instant, String)> = self
            .engines
            .iter()
            .filter(|(e, _)| !out.contains_key(*e))
            .map(|(e, seen)| (*seen, e.clone()))
            .collect();
        if idle.len() > self.max_idle_engines {
            idle.sort();
            let excess = idle.len() - self.max_idle_engines;
            for (_, engine) in idle.drain(..excess) {
                self.engines.remove(&engine);
            }
        }
        for (_, engine) in idle {
            out.insert(engine, Vec::new());
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(id: &str) -> TaskRef {
        TaskRef {
            workflow_id: "w".into(),
            task_id: id.into(),
        }
    }

    #[test]
    fn a_newer_attempt_survives_the_end_of_an_older_one() {
        let mut h = Holdings::default();
        h.insert(t("a"), 1, "ee-1", ());
        h.insert(t("a"), 2, "ee-2", ());
        h.finish(&t("a"), 1);
        let report = h.report();
        let held: Vec<_> = report.iter().flat_map(|(_, ts)| ts).collect();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].attempt, 2);
        assert_eq!(report.len(), 2, "both engines get a report");
        assert!(h.take(&t("a")).is_some());
        assert!(h.report().iter().all(|(_, ts)| ts.is_empty()));
    }

    #[test]
    fn idle_engines_are_forgotten_after_the_expiry() {
        let mut h = Holdings::with_limits(64, Duration::from_secs(60));
        let start = Instant::now();
        h.insert_at(start, t("a"), 1, "ee-1", ());
        h.insert_at(start, t("b"), 1, "ee-2", ());
        h.finish(&t("a"), 1);
        let later = start + Duration::from_secs(30);
        assert_eq!(
            h.report_at(later).len(),
            2,
            "ee-1 still hears it holds nothing"
        );
        let much_later = start + Duration::from_secs(61);
        let report = h.report_at(much_later);
        assert_eq!(
            report.len(),
            1,
            "{:?}",
            report.iter().map(|r| &r.0).collect::<Vec<_>>()
        );
        assert_eq!(
            report[0].0, "ee-2",
            "an engine holding tasks is never forgotten"
        );
        assert_eq!(h.engines_remembered(), 1);
    }

    #[test]
    fn a_flood_of_senders_is_bounded_and_reports_only_held_ids() {
        let mut h = Holdings::with_limits(64, Duration::from_secs(60));
        let start = Instant::now();
        for i in 0..300u64 {
            let at = start + Duration::from_millis(i);
            let task = t(&format!("fake-{i}"));
            h.insert_at(at, task.clone(), 1, &format!("sender-{i}"), ());
            h.finish(&task, 1);
        }
        h.insert_at(start, t("real"), 3, "ee-real", ());
        let report = h.report_at(start + Duration::from_secs(1));
        assert_eq!(
            report.len(),
            65,
            "64 idle senders plus the one holding a task"
        );
        let ids: Vec<&str> = report
            .iter()
            .flat_map(|(_, ts)| ts.iter().map(|t| t.task_id.as_str()))
            .collect();
        assert_eq!(ids, ["real"], "no report names an id that is not held");
        assert!(
            report.iter().all(|(e, _)| e == "ee-real"
                || e.trim_start_matches("sender-")
                    .parse::<u64>()
                    .is_ok_and(|n| n >= 236)),
            "the most recently active senders are kept"
        );
        assert_eq!(h.report_at(start + Duration::from_secs(120)).len(), 1);
    }
}
