//! What goes wrong, in-process with paused time: retries with backoff, errors that end a
//! task at once, duplicate and late outcomes, cancellation, ownership takeover, a write
//! that fails, engines that go silent or lose work, timeouts and methods nobody serves.

use std::collections::BTreeMap;
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{BlockedTask, HeldTask, HeldTasks, LeaseTasks, Resolution};
use gleitzeit_store::{TaskStatus, WorkflowStatus};
use gleitzeit_workflow::{Backoff, RetryPolicy};
use serde_json::json;
use tokio::time::advance;

use super::tests::*;
use super::*;

#[tokio::test(start_paused = true)]
async fn a_failed_attempt_is_retried_after_its_backoff_until_the_policy_is_used_up() {
    let mut m = machine();
    add_with(&mut m, "w", &[("a", "normal")], json!({}), |spec| {
        spec.tasks[0].retry = RetryPolicy {
            max_attempts: 2,
            backoff: Backoff::Fixed,
            base_delay: 3.0,
            max_delay: 60.0,
            jitter: false,
        };
    });
    ready(&mut m, "w", &["a"]);
    lease(&mut m, "e-1", 1);
    let fx = outcome(&mut m, "e-1", "w", "a", 1, Err(retryable()));
    assert_eq!(events_of(&fx), [events::TASK_RETRYING]);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Retrying);
    advance(Duration::from_secs(2)).await;
    tick(&mut m);
    assert_eq!(
        status(&m, "w", "a"),
        TaskStatus::Retrying,
        "still in its 3 s pause"
    );
    advance(Duration::from_secs(1)).await;
    tick(&mut m);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
    assert_eq!(leased(&lease(&mut m, "e-1", 1)), [("a".to_string(), 2)]);
    let fx = outcome(&mut m, "e-1", "w", "a", 2, Err(retryable()));
    assert_eq!(
        events_of(&fx),
        [
            events::TASK_FAILED,
            events::WORKFLOW_PROGRESS,
            events::WORKFLOW_FAILED
        ]
    );
    assert!(!m.contains("w"));
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_fails_at_once_and_skips_nothing_it_does_not_own() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal"), ("b", "normal")]);
    ready(&mut m, "w", &["a"]);
    lease(&mut m, "e-1", 1);
    let err = GzError::new(ErrorCode::TaskFailed, "bad").with_retryable(false);
    let fx = outcome(&mut m, "e-1", "w", "a", 1, Err(err));
    assert_eq!(
        events_of(&fx),
        [events::TASK_FAILED, events::WORKFLOW_PROGRESS]
    );
    // The resolver skips the dependent; then the workflow fails.
    let res = Resolution {
        skipped: vec![BlockedTask {
            task_id: "b".into(),
            error: GzError::new(ErrorCode::DependencyFailed, "a failed"),
        }],
        ..Resolution::default()
    };
    let step = m.resolution("w", res, now());
    let fx = commit(&mut m, step);
    assert_eq!(
        events_of(&fx),
        [
            events::TASK_SKIPPED,
            events::WORKFLOW_PROGRESS,
            events::WORKFLOW_FAILED
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn duplicate_late_and_foreign_outcomes_change_nothing() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal"), ("b", "normal")]);
    ready(&mut m, "w", &["a"]);
    lease(&mut m, "e-1", 1);
    // From an engine that does not hold the task: ignored.
    assert!(outcome(&mut m, "e-2", "w", "a", 1, Ok(json!("forged"))).is_empty());
    // Of another attempt: ignored.
    assert!(outcome(&mut m, "e-1", "w", "a", 7, Ok(json!("stale"))).is_empty());
    assert!(!outcome(&mut m, "e-1", "w", "a", 1, Ok(json!("first"))).is_empty());
    // The same outcome again: the recorded result stays.
    assert!(outcome(&mut m, "e-1", "w", "a", 1, Ok(json!("second"))).is_empty());
    let w = m.workflow("w").expect("w");
    assert_eq!(w.tasks[0].result_value(), Some(json!("first")));
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn cancelling_stops_running_work_on_its_engine_and_ends_the_workflow() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal"), ("b", "normal")]);
    ready(&mut m, "w", &["a", "b"]);
    lease(&mut m, "e-1", 1);
    let step = m.cancel("w", now()).expect("here");
    let (workflows, tasks) = step.records();
    assert_eq!(workflows[0].status, WorkflowStatus::Cancelled);
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Cancelled));
    let fx = commit(&mut m, step);
    let cancels: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::CancelTasks { engine, tasks } => Some((engine.to_string(), tasks.len())),
            _ => None,
        })
        .collect();
    assert_eq!(cancels, [("e-1".to_string(), 1)]);
    assert!(events_of(&fx).contains(&events::WORKFLOW_CANCELLED));
    assert!(!m.contains("w"));
    // Its queued task is not handed out any more; the late outcome finds nothing.
    assert!(leased(&lease(&mut m, "e-2", 5)).is_empty());
    assert!(outcome(&mut m, "e-1", "w", "a", 1, Ok(json!(1))).is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_workflow_taken_over_by_another_queue_manager_is_dropped_without_a_trace() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal"), ("b", "normal")]);
    ready(&mut m, "w", &["a", "b"]);
    lease(&mut m, "e-1", 1);
    assert!(m.drop_workflow("w").is_some());
    assert!(
        leased(&lease(&mut m, "e-2", 5)).is_empty(),
        "its queue entries are stale"
    );
    assert!(outcome(&mut m, "e-1", "w", "a", 1, Ok(json!(1))).is_empty());
    // Taken back later (resumed from the store): running work is queued again.
    let (record, spec, mut tasks) = workflow("w", &[("a", "normal"), ("b", "normal")], json!({}));
    tasks[0].status = TaskStatus::Running;
    tasks[0].attempts = 1;
    tasks[1].status = TaskStatus::Completed;
    assert!(m.add(record, &spec, tasks, now()));
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
    assert_eq!(leased(&lease(&mut m, "e-2", 5)), [("a".to_string(), 2)]);
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn a_step_that_cannot_be_stored_leaves_everything_as_it_was() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal")]);
    ready(&mut m, "w", &["a"]);
    let req = LeaseTasks {
        slots: BTreeMap::from([("m".to_string(), 1)]),
        wait_ms: 10_000,
        served: vec!["m".into()],
    };
    let step = m.lease_request(lease_env("e-1"), req, now());
    assert_eq!(step.task_records().len(), 1);
    let sent = m.abort(step);
    assert!(
        sent.is_empty(),
        "no lease reply for work that was not stored"
    );
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
    check_counts(&m);
    // The entry and the request are back: the next step serves them.
    let step = m.serve(now());
    assert_eq!(leased(&commit(&mut m, step)), [("a".to_string(), 1)]);
}

#[tokio::test(start_paused = true)]
async fn work_lost_with_its_engine_runs_again_at_once_without_using_up_the_policy() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal")]);
    ready(&mut m, "w", &["a"]);
    lease(&mut m, "e-1", 1);
    let step = m.engine_lost("e-1", now());
    commit(&mut m, step);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
    // Lost on the way by a provider (the engine reports it): retried at once.
    lease(&mut m, "e-2", 1);
    let lost = GzError::new(ErrorCode::Disconnected, "provider left");
    outcome(&mut m, "e-2", "w", "a", 2, Err(lost));
    assert_eq!(status(&m, "w", "a"), TaskStatus::Retrying);
    tick(&mut m);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn a_task_missing_from_two_held_reports_is_queued_again() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal"), ("b", "normal")]);
    ready(&mut m, "w", &["a", "b"]);
    lease(&mut m, "e-1", 2);
    let sent_at = now().ms + 5_000;
    let held = || HeldTasks {
        tasks: vec![HeldTask {
            workflow_id: "w".into(),
            task_id: "a".into(),
            attempt: 1,
        }],
    };
    let step = m.held_report("e-1", sent_at, held(), now());
    assert!(step.is_empty(), "missing once: not yet");
    let step = m.held_report("e-1", sent_at, held(), now());
    commit(&mut m, step);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Running);
    assert_eq!(status(&m, "w", "b"), TaskStatus::Queued);
}

#[tokio::test(start_paused = true)]
async fn a_workflow_past_its_timeout_fails() {
    let mut m = machine_with_grace(Duration::from_secs(3600));
    add_with(
        &mut m,
        "w",
        &[("a", "normal")],
        json!({ "timeout": 60 }),
        |_| {},
    );
    ready(&mut m, "w", &["a"]);
    advance(Duration::from_secs(59)).await;
    tick(&mut m);
    assert!(m.contains("w"));
    advance(Duration::from_secs(2)).await;
    let step = m.tick(now());
    let (workflows, _) = step.records();
    let error = workflows[0].error.clone().unwrap_or_default();
    assert_eq!(error["code"], json!(ErrorCode::WorkflowTimeout.as_str()));
    let fx = commit(&mut m, step);
    assert!(events_of(&fx).contains(&events::WORKFLOW_FAILED));
}

#[tokio::test(start_paused = true)]
async fn queued_tasks_of_a_method_nobody_serves_fail_after_the_grace() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal")]);
    ready(&mut m, "w", &["a"]);
    advance(GRACE + Duration::from_secs(1)).await;
    let step = m.tick(now());
    assert_eq!(step.task_records()[0].status, TaskStatus::Failed);
    assert_eq!(step.workflow_records()[0].status, WorkflowStatus::Failed);
    let error = step.task_records()[0].error.clone().unwrap_or_default();
    assert_eq!(error["code"], json!(ErrorCode::NoProvider.as_str()));
    commit(&mut m, step);
    assert!(!m.contains("w"));
}

#[tokio::test(start_paused = true)]
async fn a_method_first_queued_long_after_the_start_still_gets_the_whole_grace() {
    let mut m = machine();
    advance(GRACE * 3).await;
    tick(&mut m);
    // A function a service declares a moment after the workflow that calls it is submitted.
    add(&mut m, "w", &[("a", "normal")]);
    ready(&mut m, "w", &["a"]);
    advance(GRACE / 2).await;
    tick(&mut m);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
    advance(GRACE).await;
    let step = m.tick(now());
    assert_eq!(step.task_records()[0].status, TaskStatus::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_stall_of_the_queue_manager_is_not_held_against_the_engines() {
    let mut m = machine_with_grace(Duration::from_secs(3600));
    add(&mut m, "w", &[("a", "normal")]);
    ready(&mut m, "w", &["a"]);
    lease(&mut m, "e-1", 1);
    // Nothing ran here for 20 s (a store outage): the engine's lease starts afresh.
    advance(Duration::from_secs(20)).await;
    tick(&mut m);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Running);
    pass(&mut m, 14).await;
    assert_eq!(status(&m, "w", "a"), TaskStatus::Running);
    pass(&mut m, 2).await;
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
}
