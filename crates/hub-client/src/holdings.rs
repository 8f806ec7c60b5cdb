//! What a provider holds: the task attempts it was handed, by the engine that sent them,
//! each with a handle to stop it. Providers report these every couple of seconds
//! (`tasks_held`), so an engine learns about attempts lost on the way.

use std::collections::{HashMap, HashSet};

use gleitzeit_protocol::payloads::{HeldTask, TaskRef};

struct Held<H> {
    attempt: u32,
    engine: String,
    handle: H,
}

/// Held attempts with a stop handle `H` (a cancel sender, an abort handle).
pub struct Holdings<H> {
    tasks: HashMap<TaskRef, Held<H>>,
    engines: HashSet<String>,
}

impl<H> Default for Holdings<H> {
    fn default() -> Self {
        Holdings {
            tasks: HashMap::new(),
            engines: HashSet::new(),
        }
    }
}

impl<H> Holdings<H> {
    /// Records an attempt handed over by `engine` (a newer attempt replaces an older one).
    pub fn insert(&mut self, task: TaskRef, attempt: u32, engine: &str, handle: H) {
        self.engines.insert(engine.to_string());
        self.tasks.insert(
            task,
            Held {
                attempt,
                engine: engine.to_string(),
                handle,
            },
        );
    }

    /// Takes a task out (whatever its attempt) to stop it.
    pub fn take(&mut self, task: &TaskRef) -> Option<H> {
        self.tasks.remove(task).map(|h| h.handle)
    }

    /// The attempt finished: forget it, unless a newer attempt took its place.
    pub fn finish(&mut self, task: &TaskRef, attempt: u32) {
        if self.tasks.get(task).is_some_and(|h| h.attempt == attempt) {
            self.tasks.remove(task);
        }
    }

    /// Per engine that ever sent tasks, the attempts held for it (possibly none).
    pub fn report(&self) -> Vec<(String, Vec<HeldTask>)> {
        let mut out: HashMap<String, Vec<HeldTask>> = self
            .engines
            .iter()
            .map(|e| (e.clone(), Vec::new()))
            .collect();
        for (key, h) in &self.tasks {
            out.entry(h.engine.clone()).or_default().push(HeldTask {
                workflow_id: key.workflow_id.clone(),
                task_id: key.task_id.clone(),
                attempt: h.attempt,
            });
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
}
