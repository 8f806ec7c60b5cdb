//! Batches (`metadata.batch`): a failed file tells the resolver its error, a `fail_fast`
//! batch cancels the rest.

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_store::TaskStatus;
use serde_json::json;

use super::tests::*;
use super::*;

/// A batch `c` of two files (`c-00001`, `c-00002`) and a task `all` after it.
fn add_batch(m: &mut Machine, fail_fast: bool) {
    let batch = json!({ "batch": { "template": "c", "files": 2, "fail_fast": fail_fast } });
    let tasks = [
        ("c-00001", "normal"),
        ("c-00002", "normal"),
        ("all", "normal"),
    ];
    add_with(m, "w", &tasks, json!({ "metadata": batch }), |spec| {
        spec.tasks[2].tolerate_failures = true;
    });
    ready(m, "w", &["c-00001", "c-00002"]);
    lease(m, "e-1", 2);
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_file_tells_the_resolver_its_error_and_the_rest_goes_on() {
    let mut m = machine();
    add_batch(&mut m, false);
    let err = GzError::new(ErrorCode::PythonException, "bad file").with_retryable(false);
    let fx = outcome(&mut m, "e-1", "w", "c-00001", 1, Err(err));
    let told: Vec<_> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::TellResolver { finished, .. } => Some(finished.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].status, "failed");
    assert_eq!(
        told[0]
            .result
            .as_ref()
            .map(|r| r.to_value()["error"]["code"].clone()),
        Some(json!("GZ2025"))
    );
    assert_eq!(status(&m, "w", "c-00002"), TaskStatus::Running);
    // The resolver releases the tolerant task; it runs and the workflow ends as before
    // (failed: one file failed and `on_failure` is `fail`).
    outcome(&mut m, "e-1", "w", "c-00002", 1, Ok(json!({"result": 2})));
    ready(&mut m, "w", &["all"]);
    lease(&mut m, "e-1", 1);
    let fx = outcome(
        &mut m,
        "e-1",
        "w",
        "all",
        1,
        Ok(json!({"result": "summed"})),
    );
    assert!(events_of(&fx).contains(&events::WORKFLOW_FAILED));
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn a_failed_file_of_a_fail_fast_batch_cancels_the_rest() {
    let mut m = machine();
    add_batch(&mut m, true);
    let err = GzError::new(ErrorCode::PythonException, "bad file").with_retryable(false);
    let fx = outcome(&mut m, "e-1", "w", "c-00001", 1, Err(err));
    assert!(events_of(&fx).contains(&events::WORKFLOW_FAILED), "{fx:?}");
    let stopped: Vec<String> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::CancelTasks { tasks, .. } => Some(tasks.clone()),
            _ => None,
        })
        .flatten()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(stopped, ["c-00002"], "running work is stopped");
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::TellResolver { .. })),
        "nothing is released after the stop"
    );
    assert!(m.workflow("w").is_none(), "the workflow ended");
}
