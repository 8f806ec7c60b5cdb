//! The plan's tasks as the resolver keeps them: what it reads of each task of a spec, read
//! one task at a time, and the ids of every task (the spec's and the fan-outs' members).
//!
//! A plan holds its tasks for the whole run, so it keeps only what it reads: each task's
//! id (once), its name where that is not its id, its parameters as JSON text, whether it
//! tolerates failures and its fan-out block. The spec's methods, protocols, files, retries,
//! timeouts, attachments and descriptions are the queue-manager's and are skipped while
//! reading; dependencies become the graph's edges. [`PlanSpec`] reads a spec so, never
//! holding its tasks as [`gleitzeit_workflow::TaskSpec`]s (264 bytes and five strings each).

use std::collections::HashMap;
use std::fmt;

use gleitzeit_workflow::fanout::FanOut;
use gleitzeit_workflow::positions::Positions;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// Every task's id, by position, and the position of each id: each id is held once (the
/// lookup table holds positions only).
pub(super) struct Ids {
    ids: Vec<Box<str>>,
    positions: Positions,
}

impl Ids {
    fn new() -> Ids {
        Ids {
            ids: Vec::new(),
            positions: Positions::new(),
        }
    }

    /// Adds `id` at the next position; an id already known then names the new position.
    pub(super) fn push(&mut self, id: Box<str>) -> usize {
        let at = self.ids.len();
        let ids = &self.ids;
        self.positions.insert(&id, at, |p| ids.get(p).map(|k| &**k));
        self.ids.push(id);
        at
    }

    /// The position of the task `id`.
    pub(super) fn get(&self, id: &str) -> Option<usize> {
        self.positions.get(id, |p| self.ids.get(p).map(|k| &**k))
    }

    /// The id of the task at `i` (empty past the last).
    pub(super) fn id(&self, i: usize) -> &str {
        self.ids.get(i).map_or("", |id| id)
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// A spec as the plan reads it (see the module docs).
#[derive(Deserialize)]
pub struct PlanSpec {
    /// The workflow's free-form data: the plan reads `metadata.batch` of it.
    #[serde(default)]
    pub(super) metadata: Value,
    pub(super) tasks: SpecTasks,
}

/// The spec's tasks, read one at a time into what the plan keeps of them.
pub(super) struct SpecTasks {
    pub(super) ids: Ids,
    /// Names that are not their task's id, and the task they name.
    pub(super) by_name: HashMap<Box<str>, usize>,
    /// The same names by task.
    pub(super) name_of: HashMap<usize, Box<str>>,
    /// Each task's parameters as JSON text (`{}` where it gave none).
    pub(super) params: Vec<Box<RawValue>>,
    pub(super) tolerant: Vec<bool>,
    /// The fan-out templates' `batch` blocks.
    pub(super) fans: HashMap<usize, FanOut>,
    /// `(task, dependency)` positions.
    pub(super) edges: Vec<(usize, usize)>,
    /// Dependencies on a task listed later, by id, resolved once every task is read.
    pending: Vec<(usize, Box<str>)>,
}

/// One task of a spec, as the plan reads it: what is not named here is skipped.
#[derive(Deserialize)]
struct TaskRead {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default = "no_parameters", alias = "params")]
    parameters: Box<RawValue>,
    #[serde(default)]
    dependencies: Vec<String>,
    #[serde(default)]
    tolerate_failures: bool,
    #[serde(default)]
    batch: Option<FanOut>,
}

/// `{}`, a task's parameters when it gave none (`null` if `{}` could not be read: it can).
fn no_parameters() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).unwrap_or_default()
}

impl SpecTasks {
    fn new() -> SpecTasks {
        SpecTasks {
            ids: Ids::new(),
            by_name: HashMap::new(),
            name_of: HashMap::new(),
            params: Vec::new(),
            tolerant: Vec::new(),
            fans: HashMap::new(),
            edges: Vec::new(),
            pending: Vec::new(),
        }
    }

    fn add(&mut self, task: TaskRead) {
        let i = self.ids.push(task.id.into_boxed_str());
        if !task.name.is_empty() && task.name != self.ids.id(i) {
            let name = task.name.into_boxed_str();
            self.by_name.insert(name.clone(), i);
            self.name_of.insert(i, name);
        }
        self.params.push(task.parameters);
        self.tolerant.push(task.tolerate_failures);
        if let Some(fan) = task.batch {
            self.fans.insert(i, fan);
        }
        for dependency in task.dependencies {
            match self.ids.get(&dependency) {
                Some(d) => self.edges.push((i, d)),
                None => self.pending.push((i, dependency.into_boxed_str())),
            }
        }
    }

    /// Resolves the dependencies on tasks listed later; ones naming no task are dropped
    /// (the queue-manager's checks refuse such a spec).
    fn resolve_pending(&mut self) {
        for (i, dependency) in std::mem::take(&mut self.pending) {
            if let Some(d) = self.ids.get(&dependency) {
                self.edges.push((i, d));
            }
        }
    }
}

impl<'de> Deserialize<'de> for SpecTasks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Tasks;
        impl<'de> Visitor<'de> for Tasks {
            type Value = SpecTasks;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of tasks")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SpecTasks, A::Error> {
                let mut tasks = SpecTasks::new();
                while let Some(task) = seq.next_element::<TaskRead>()? {
                    tasks.add(task);
                }
                tasks.resolve_pending();
                Ok(tasks)
            }
        }
        d.deserialize_seq(Tasks)
    }
}

impl PlanSpec {
    /// The spec of `spec`'s JSON text.
    ///
    /// # Errors
    ///
    /// When the text is not a spec.
    pub fn read(text: &str) -> Result<PlanSpec, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_found_by_position_and_the_last_of_a_repeated_id_wins() {
        let mut ids = Ids::new();
        for k in 0..1000 {
            assert_eq!(ids.push(format!("t{k}").into_boxed_str()), k);
        }
        assert_eq!(ids.get("t0"), Some(0));
        assert_eq!(ids.get("t999"), Some(999));
        assert_eq!(ids.get("t1000"), None);
        assert_eq!(ids.id(7), "t7");
        assert_eq!(ids.id(5000), "");
        assert_eq!(ids.push("t3".into()), 1000);
        assert_eq!(ids.get("t3"), Some(1000));
        assert_eq!(ids.len(), 1001);
    }

    #[test]
    fn a_spec_is_read_into_what_the_plan_keeps() {
        let text = json!({
            "name": "w", "description": "skipped", "attachments": {"sha256:x": {"content": "big"}},
            "metadata": {"batch": {"template": "t"}, "owner": "me"},
            "tasks": [
                {"id": "b", "name": "B", "method": "python/execute", "dependencies": ["a", "nowhere"],
                 "params": {"x": "${a.result}"}, "tolerate_failures": true, "retry": {"max_attempts": 3}},
                {"id": "a", "name": "a", "method": "python/execute", "parameters": null,
                 "batch": {"from": "${z.result}"}, "files": {"/f": {"digest": "sha256:x"}}},
                {"id": "c", "method": "m", "dependencies": ["b", "a"]}
            ]
        })
        .to_string();
        let spec = PlanSpec::read(&text).expect("reads");
        assert_eq!(spec.metadata["batch"]["template"], "t");
        let t = &spec.tasks;
        assert_eq!(t.params.len(), 3);
        assert_eq!((t.ids.get("a"), t.ids.get("B")), (Some(1), None));
        assert_eq!(t.by_name.get("B"), Some(&0));
        assert_eq!(t.name_of.len(), 1, "a name that is its id is not kept");
        let params: Vec<&str> = t.params.iter().map(|p| p.get()).collect();
        assert_eq!(params, [r#"{"x":"${a.result}"}"#, "null", "{}"]);
        assert_eq!(t.tolerant, [true, false, false]);
        assert_eq!(t.fans.get(&1).map(|f| f.from.as_str()), Some("${z.result}"));
        let mut edges = t.edges.clone();
        edges.sort_unstable();
        assert_eq!(edges, [(0, 1), (2, 0), (2, 1)]);
    }

    #[test]
    fn what_is_not_a_spec_is_refused() {
        for text in [
            "null",
            r#"{"tasks": 3}"#,
            r#"{"tasks": [{"name": "no id"}]}"#,
            r#"{"tasks": [{"id": "a", "parameters": {}, "params": {}}]}"#,
        ] {
            assert!(PlanSpec::read(text).is_err(), "{text}");
        }
    }
}
