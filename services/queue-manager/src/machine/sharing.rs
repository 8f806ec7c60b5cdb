//! The task records of one workflow share their strings: the workflow's id, each method
//! once, and a name that is the task's own id. A queue-manager holds a record per task for a
//! workflow's whole run (a million for `gz bench --big 1000000`): shared, those strings cost
//! one allocation per workflow or method instead of three per task.

use std::collections::HashSet;
use std::sync::Arc;

use gleitzeit_store::TaskRecord;

/// Makes `tasks` (all of workflow `wf`) share their strings.
pub(crate) fn share_strings(wf: &Arc<str>, tasks: &mut [TaskRecord]) {
    let mut methods: HashSet<Arc<str>> = HashSet::new();
    for t in tasks {
        t.workflow_id = wf.clone();
        if t.name == t.task_id {
            t.name = t.task_id.clone();
        }
        match methods.get(&t.method) {
            Some(method) => t.method = method.clone(),
            None => {
                methods.insert(t.method.clone());
            }
        }
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
    }
}
