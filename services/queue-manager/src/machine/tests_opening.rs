//! Tasks ready at a workflow's submission: taken in queued, announced as a step queuing
//! them would, leased before any resolver answered; ends before that answer are kept back
//! and told with it.

use gleitzeit_protocol::events;
use gleitzeit_store::{TaskStatus, WorkflowStatus};
use serde_json::json;
use serde_json::value::RawValue;

use super::tests::{
    check_counts, events_of, lease, leased, machine, now, outcome, ready, status, told, workflow,
};
use super::{open_task, open_workflow, Machine};

/// `w`: a and b ready as written, c after a; a and b taken in queued.
fn opened(m: &mut Machine) {
    let (mut record, mut spec, mut records) = workflow(
        "w",
        &[("a", "normal"), ("b", "normal"), ("c", "normal")],
        json!({}),
    );
    spec.tasks[2].dependencies = vec!["a".into()];
    for t in &mut records[..2] {
        let params = RawValue::from_string(r#"{"code":"result = 1"}"#.into()).expect("JSON");
        open_task(t, params, now());
    }
    open_workflow(&mut record, now());
    assert!(m.add(record, &spec, records, now()));
}

#[tokio::test(start_paused = true)]
async fn tasks_queued_at_the_submission_are_announced_and_leased_at_once() {
    let mut m = machine();
    opened(&mut m);
    assert_eq!(
        events_of(&m.opening("w")),
        [
            events::TASK_QUEUED,
            events::TASK_QUEUED,
            events::WORKFLOW_STARTED
        ]
    );
    let w = m.workflow("w").expect("in memory");
    assert_eq!(w.record.status, WorkflowStatus::Running);
    assert_eq!(status(&m, "w", "c"), TaskStatus::Pending);
    let fx = lease(&mut m, "e-1", 4);
    assert_eq!(leased(&fx), [("a".to_string(), 1), ("b".to_string(), 1)]);
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn ends_before_the_plan_is_answered_are_told_with_the_answer() {
    let mut m = machine();
    opened(&mut m);
    lease(&mut m, "e-1", 4);
    let fx = outcome(&mut m, "e-1", "w", "a", 1, Ok(json!(1)));
    assert!(
        told(&fx).is_empty(),
        "no resolver is known to have the plan yet"
    );
    // The answer names neither a nor b (started in the plan).
    let fx = ready(&mut m, "w", &[]);
    assert_eq!(told(&fx), [vec!["a".to_string()]]);
    // From here on ends are told as they come.
    let fx = outcome(&mut m, "e-1", "w", "b", 1, Ok(json!(1)));
    assert!(told(&fx).is_empty(), "nothing waits for b");
    check_counts(&m);
}

#[test]
fn a_workflow_without_tasks_ready_as_written_announces_nothing_at_its_start() {
    let mut m = machine();
    let (record, spec, records) = workflow("w", &[("a", "normal")], json!({}));
    assert!(m.add(record, &spec, records, now()));
    assert!(m.opening("w").is_empty());
    assert!(m.opening("unknown").is_empty());
}
