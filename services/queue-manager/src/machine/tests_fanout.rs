//! Fan-outs in the life cycle, in-process: members added in the step that stores them (or
//! not at all), the template's join, members failing at once, the task limit, a repeated
//! expansion, and a workflow resumed with its members.

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{Expansion, JoinedTask, MemberTask, Resolution};
use gleitzeit_store::{TaskRecord, TaskStatus, WorkflowStatus};
use gleitzeit_workflow::fanout::FanOut;
use serde_json::json;

use super::tests::{add_with, commit, events_of, lease, leased, machine, now, outcome, workflow};
use super::*;
use gleitzeit_store::JsonText;

/// A workflow `f` whose only task `t` fans out (priority high, so members inherit it).
fn add_template(m: &mut Machine) {
    add_with(m, "f", &[("t", "high")], json!({}), |spec| {
        spec.tasks[0].batch = Some(FanOut {
            from: "${src.result}".into(),
            max_items: 100,
            fail_fast: false,
        });
    });
}

fn member(n: usize, params: Option<serde_json::Value>) -> MemberTask {
    MemberTask {
        task_id: format!("t-{n:05}"),
        name: format!("t [{}]", n - 1),
        error: params
            .is_none()
            .then(|| GzError::new(ErrorCode::SubstitutionFailed, "`${item.x}`: no field `x`")),
        params: params.as_ref().map(JsonText::of_value),
    }
}

fn expansion(members: Vec<MemberTask>) -> Resolution {
    Resolution {
        expanded: vec![Expansion {
            template: "t".into(),
            members,
        }],
        ..Resolution::default()
    }
}

fn status_of(m: &Machine, task: &str) -> Option<TaskStatus> {
    let wf = m.workflow("f")?;
    wf.position(task).map(|i| wf.tasks[i].status)
}

#[tokio::test(start_paused = true)]
async fn members_join_in_the_step_that_stores_them_and_the_template_joins_them() {
    let mut m = machine();
    add_template(&mut m);
    let res = expansion(vec![
        member(1, Some(json!({"x": 1}))),
        member(2, Some(json!({"x": 2}))),
    ]);
    let step = m.resolution("f", res, now());
    // Proposed, not applied: the members and the new total are in the step's records.
    assert_eq!(m.workflow("f").map(|w| w.tasks.len()), Some(1));
    let (workflows, tasks) = step.records();
    assert_eq!(workflows[0].total_tasks, 3);
    assert_eq!(
        tasks
            .iter()
            .map(|t| (&*t.task_id, t.status))
            .collect::<Vec<_>>(),
        [
            ("t-00001", TaskStatus::Queued),
            ("t-00002", TaskStatus::Queued)
        ]
    );
    assert_eq!(tasks[1].params_value(), Some(json!({"x": 2})));
    assert_eq!(
        tasks[0].priority, 3,
        "a member keeps its template's priority"
    );
    let effects = commit(&mut m, step);
    assert!(events_of(&effects).contains(&events::WORKFLOW_STARTED));
    assert_eq!(m.workflow("f").map(|w| w.tasks.len()), Some(3));
    assert_eq!(status_of(&m, "t"), Some(TaskStatus::Pending));

    let handed = leased(&lease(&mut m, "e-1", 5));
    assert_eq!(handed.len(), 2);
    outcome(&mut m, "e-1", "f", "t-00001", 1, Ok(json!({"result": 10})));
    let effects = outcome(&mut m, "e-1", "f", "t-00002", 1, Ok(json!({"result": 20})));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::TellResolver { .. })),
        "the resolver learns the members finished"
    );
    assert!(!events_of(&effects).contains(&events::WORKFLOW_COMPLETED));

    let joined = json!({"result": [10, 20], "completed": 2, "failed": 0});
    let res = Resolution {
        joined: vec![JoinedTask {
            task_id: "t".into(),
            result: JsonText::of_value(&joined),
        }],
        ..Resolution::default()
    };
    let step = m.resolution("f", res, now());
    assert_eq!(step.task_records()[0].result_value(), Some(joined));
    let effects = commit(&mut m, step);
    let events = events_of(&effects);
    assert!(events.contains(&events::TASK_COMPLETED), "{events:?}");
    assert!(events.contains(&events::WORKFLOW_COMPLETED), "{events:?}");
    assert!(m.workflow("f").is_none(), "finished workflows leave memory");
}

#[tokio::test(start_paused = true)]
async fn an_aborted_expansion_leaves_nothing_and_a_repeated_one_adds_nothing() {
    let mut m = machine();
    add_template(&mut m);
    let res = expansion(vec![member(1, Some(json!({})))]);
    let step = m.resolution("f", res.clone(), now());
    m.abort(step);
    assert_eq!(m.workflow("f").map(|w| w.tasks.len()), Some(1));
    assert!(leased(&lease(&mut m, "e-1", 5)).is_empty());

    let step = m.resolution("f", res.clone(), now());
    commit(&mut m, step);
    assert_eq!(status_of(&m, "t-00001"), Some(TaskStatus::Queued));
    // A rebuilt resolver reports the same expansion again.
    let step = m.resolution("f", res, now());
    assert!(step.nothing_to_store());
    assert_eq!(m.workflow("f").map(|w| w.tasks.len()), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_member_whose_parameters_failed_fails_at_once() {
    let mut m = machine();
    add_template(&mut m);
    let res = expansion(vec![member(1, None), member(2, Some(json!({})))]);
    let step = m.resolution("f", res, now());
    let effects = commit(&mut m, step);
    assert_eq!(
        events_of(&effects),
        [
            events::TASK_FAILED,
            events::WORKFLOW_STARTED,
            events::WORKFLOW_PROGRESS
        ]
    );
    assert_eq!(status_of(&m, "t-00001"), Some(TaskStatus::Failed));
    let wf = m.workflow("f").expect("running");
    assert_eq!(wf.counts.get(TaskStatus::Failed), 1);
    assert_eq!(wf.counts.get(TaskStatus::Queued), 1);
    assert_eq!(wf.counts.get(TaskStatus::Pending), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fan_out_past_the_task_limit_fails_its_template_and_tells_the_resolver() {
    let mut m = machine();
    m.settings.max_tasks = 3;
    add_template(&mut m);
    let res = expansion((1..=3).map(|n| member(n, Some(json!({})))).collect());
    let step = m.resolution("f", res, now());
    let (_, tasks) = step.records();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].status, TaskStatus::Failed);
    assert_eq!(
        tasks[0].error.as_ref().and_then(|e| e["code"].as_str()),
        Some("GZ7012")
    );
    let effects = commit(&mut m, step);
    assert!(effects.is_empty() || events_of(&effects).contains(&events::WORKFLOW_FAILED));
}

#[tokio::test(start_paused = true)]
async fn a_resumed_workflow_takes_its_members_with_their_templates_settings() {
    let (record, mut spec, mut tasks) = workflow("f", &[("t", "urgent")], json!({}));
    spec.tasks[0].batch = Some(FanOut {
        from: "${src.result}".into(),
        max_items: 100,
        fail_fast: true,
    });
    let mut queued = TaskRecord::pending("f", "t-00001", "t [0]", "m", 4);
    queued.status = TaskStatus::Queued;
    tasks.push(queued);
    let mut m = machine();
    assert!(m.add(record.clone(), &spec, tasks.clone(), now()));
    let wf = m.workflow("f").expect("resumed");
    assert_eq!(wf.tasks.len(), 2);
    assert!(wf.info[1].fail_fast, "a member of a fail_fast fan-out");
    assert_eq!(wf.info[1].priority, wf.info[0].priority);
    assert_eq!(leased(&lease(&mut m, "e-1", 5)).len(), 1);

    // A task that is neither the spec's nor a member of one of its fan-outs: refused.
    tasks.push(TaskRecord::pending("f", "stray", "stray", "m", 2));
    let mut other = machine();
    assert!(!other.add(record, &spec, tasks, now()));
}

#[tokio::test(start_paused = true)]
async fn a_fail_fast_fan_out_whose_item_fails_at_once_cancels_the_items_made_with_it() {
    let mut m = machine();
    add_with(&mut m, "f", &[("t", "normal")], json!({}), |spec| {
        spec.tasks[0].batch = Some(FanOut {
            from: "${src.result}".into(),
            max_items: 100,
            fail_fast: true,
        });
    });
    let res = expansion(vec![member(1, Some(json!({}))), member(2, None)]);
    let step = m.resolution("f", res, now());
    let (workflows, tasks) = step.records();
    assert_eq!(workflows[0].status, WorkflowStatus::Failed);
    let status = |id: &str| tasks.iter().find(|t| &*t.task_id == id).map(|t| t.status);
    assert_eq!(
        status("t-00001"),
        Some(TaskStatus::Cancelled),
        "no item is left queued"
    );
    assert_eq!(status("t-00002"), Some(TaskStatus::Failed));
    assert_eq!(status("t"), Some(TaskStatus::Cancelled));
    let effects = commit(&mut m, step);
    assert!(events_of(&effects).contains(&events::WORKFLOW_FAILED));
    assert!(m.workflow("f").is_none());
}
