//! What memory keeps of a task once it ended: a big workflow leaves its ended tasks'
//! parameters and results to the store (they were stored before the commit that ended
//! them), after handing the result to the resolver and the watchers.

use serde_json::json;

use super::tests::{add_with, lease, leased, machine, outcome, parsed, ready};
use super::*;
use gleitzeit_store::JsonText;

fn run_first(m: &mut Machine, wf: &str, n: usize) -> Vec<Effect> {
    let ids: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
    let tasks: Vec<(&str, &str)> = ids.iter().map(|i| (i.as_str(), "normal")).collect();
    // t1 waits for t0, so the resolver hears of t0's end.
    add_with(m, wf, &tasks, json!({}), |spec| {
        spec.tasks[1].dependencies = vec!["t0".into()]
    });
    ready(m, wf, &["t0"]);
    let out = leased(&lease(m, "e-1", 1));
    assert_eq!(out, vec![("t0".to_string(), 1)]);
    outcome(m, "e-1", wf, "t0", 1, Ok(json!({ "answer": 42 })))
}

fn told_resolver(effects: &[Effect]) -> Vec<Option<serde_json::Value>> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::TellResolver { finished, .. } => Some(finished.clone()),
            _ => None,
        })
        .flatten()
        .map(|f| f.result.as_ref().map(JsonText::to_value))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_big_workflow_keeps_no_data_of_its_ended_tasks() {
    let mut m = machine();
    let effects = run_first(&mut m, "big", RESULTS_IN_EVENT_LIMIT + 1);
    assert_eq!(told_resolver(&effects), vec![Some(json!({ "answer": 42 }))]);
    let event = effects.iter().find_map(|e| match e {
        Effect::Event { payload, .. } if parsed(payload)["status"] == "completed" => {
            Some(parsed(payload))
        }
        _ => None,
    });
    assert_eq!(
        event.map(|p| p["result"].clone()),
        Some(json!({ "answer": 42 }))
    );
    let wf = m.workflow("big").expect("running");
    assert!(wf.keeps_results_in_store());
    let t0 = &wf.tasks[0];
    assert_eq!(t0.status, TaskStatus::Completed);
    assert!(
        t0.result.is_none() && t0.params.is_none(),
        "left to the store"
    );
}

#[tokio::test(start_paused = true)]
async fn a_small_workflow_keeps_its_results_for_the_completion_event() {
    let mut m = machine();
    run_first(&mut m, "small", 3);
    let wf = m.workflow("small").expect("running");
    assert!(!wf.keeps_results_in_store());
    assert_eq!(wf.tasks[0].result_value(), Some(json!({ "answer": 42 })));
}

#[test]
fn a_task_costs_the_machine_few_bytes_besides_its_record() {
    // The scheduling facts of one task (a million of them for `gz bench --big 1000000`):
    // a default retry policy and no files take no room of their own.
    assert!(
        std::mem::size_of::<TaskInfo>() <= 80,
        "{} bytes",
        std::mem::size_of::<TaskInfo>()
    );
    let spec: TaskSpec = serde_json::from_value(json!({
        "id": "t", "method": "python/execute", "parameters": {}
    }))
    .expect("a task");
    let info = TaskInfo::new(&spec);
    assert!(info.retry.is_none() && info.files.is_empty());
    assert_eq!(info.retry(), &RetryPolicy::default());
}

#[test]
fn a_task_record_is_held_in_few_bytes() {
    // The machine holds one per task for the whole run; its strings are shared
    // (`sharing.rs`), so this is most of what a task costs it.
    let size = std::mem::size_of::<TaskRecord>();
    assert!(size <= 224, "{size} bytes");
}
