//! The task records of one workflow share their strings: the workflow's id, each method
//! once, and a name that is the task's own id. A queue-manager holds a record per task for a
//! workflow's whole run (a million for `gz bench --big 1000000`): shared, those strings cost
//! one allocation per workflow or method instead of three per task.

use std::collections::HashSet;
use std::sync::Arc;

use gleitzeit_store::TaskRecord;
#[cfg(test)]
use gleitzeit_store::TaskStatus;

/// The strings the records of one workflow share: its id and its methods.
pub(crate) struct Shared {
    wf: Arc<str>,
    methods: HashSet<Arc<str>>,
}

impl Shared {
    /// For the records of workflow `wf`.
    pub(crate) fn new(wf: Arc<str>) -> Shared {
        Shared {
            wf,
            methods: HashSet::new(),
        }
    }

    /// `method`, held once.
    fn method(&mut self, method: &str) -> Arc<str> {
        if let Some(known) = self.methods.get(method) {
            return known.clone();
        }
        let method: Arc<str> = Arc::from(method);
        self.methods.insert(method.clone());
        method
    }

    /// A new task's record (pending), made with the shared strings from the start.
    pub(crate) fn pending(
        &mut self,
        task_id: String,
        name: String,
        method: &str,
        priority: i32,
    ) -> TaskRecord {
        let task_id: Arc<str> = task_id.into();
        let name = member_name(&task_id, name);
        let method = self.method(method);
        TaskRecord::pending(self.wf.clone(), task_id, name, method, priority)
    }

    /// Makes a record (read from the store, say) share the strings; one that shares the
    /// workflow's id already was made with them (by [`Shared::pending`] or as a fan-out
    /// member copying its template) and is left as it is.
    fn share(&mut self, t: &mut TaskRecord) {
        if Arc::ptr_eq(&t.workflow_id, &self.wf) {
            return;
        }
        t.workflow_id = self.wf.clone();
        if t.name == t.task_id {
            t.name = t.task_id.clone();
        }
        t.method = self.method(&t.method);
    }
}

/// Makes `tasks` (all of workflow `wf`) share their strings.
pub(crate) fn share_strings(wf: &Arc<str>, tasks: &mut [TaskRecord]) {
    let mut shared = Shared::new(wf.clone());
    for t in tasks {
        shared.share(t);
    }
}

/// A fan-out member's name: its id when they are the same text (shared, not copied).
pub(crate) fn member_name(task_id: &Arc<str>, name: String) -> Arc<str> {
    if *name == **task_id {
        task_id.clone()
    } else {
        name.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_a_workflow_share_its_id_their_methods_and_names_equal_to_ids() {
        let mut tasks: Vec<TaskRecord> = (0..3)
            .map(|i| TaskRecord::pending("w", format!("t{i}"), format!("t{i}"), "m", 2))
            .collect();
        tasks[2].name = "other".into();
        let wf: Arc<str> = Arc::from("w");
        share_strings(&wf, &mut tasks);
        assert!(tasks.iter().all(|t| Arc::ptr_eq(&t.workflow_id, &wf)));
        assert!(Arc::ptr_eq(&tasks[0].method, &tasks[1].method));
        assert!(Arc::ptr_eq(&tasks[0].method, &tasks[2].method));
        assert!(Arc::ptr_eq(&tasks[0].name, &tasks[0].task_id));
        assert_eq!(&*tasks[2].name, "other");
        let id: Arc<str> = Arc::from("t-1");
        assert!(Arc::ptr_eq(&member_name(&id, "t-1".into()), &id));
        assert_eq!(&*member_name(&id, "t [1]".into()), "t [1]");
        let mut shared = Shared::new(wf.clone());
        let made = shared.pending("t9".into(), "t9".into(), "m", 2);
        let other = shared.pending("t10".into(), "ten".into(), "m", 2);
        assert!(Arc::ptr_eq(&made.workflow_id, &wf) && Arc::ptr_eq(&made.name, &made.task_id));
        assert!(Arc::ptr_eq(&made.method, &other.method));
        assert_eq!((&*other.name, made.status), ("ten", TaskStatus::Pending));
        // Records made so are left as they are by a second pass.
        let mut again = vec![made.clone()];
        share_strings(&wf, &mut again);
        assert!(Arc::ptr_eq(&again[0].method, &made.method));
    }
}
