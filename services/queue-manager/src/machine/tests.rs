//! The life cycle in-process, with paused time: every transition, leases and their
//! expiry, priorities, files, and the helpers the other test modules share. What goes wrong
//! (retries, errors, cancellation, takeover, lost engines, timeouts) is in
//! `tests_failures.rs`, batches in `tests_batch.rs`, fan-outs in `tests_fanout.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{
    BlockedTask, LeaseTasks, LeasedTasks, ReadyTask, Resolution, TaskOutcome, TaskOutcomes,
};
use gleitzeit_protocol::{Envelope, Target};
use gleitzeit_store::{JsonText, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus};
use gleitzeit_workflow::{Backoff, RetryPolicy, WorkflowSpec};
use serde_json::{json, Value};
use tokio::time::{advance, Instant};

use super::*;

pub(super) const LEASE_TIMEOUT: Duration = Duration::from_secs(15);
pub(super) const GRACE: Duration = Duration::from_secs(30);

pub(super) fn now() -> Now {
    Now {
        at: Instant::now(),
        ms: 1_000_000,
    }
}

pub(super) fn machine() -> Machine {
    machine_with_grace(GRACE)
}

/// A machine whose methods may go unserved for `grace`.
pub(super) fn machine_with_grace(grace: Duration) -> Machine {
    let settings = Settings {
        id: "qm-1".into(),
        lease_timeout: LEASE_TIMEOUT,
        provider_grace: grace,
        max_tasks: 200_000,
    };
    Machine::new(settings, Instant::now()).with_jitter(|| 1.0)
}

/// A workflow `w` with tasks `(id, priority)` of method `m`, and its records.
pub(super) fn workflow(
    id: &str,
    tasks: &[(&str, &str)],
    extra: Value,
) -> (WorkflowRecord, WorkflowSpec, Vec<TaskRecord>) {
    let mut spec_json = json!({
        "name": id,
        "tasks": tasks.iter().map(|(t, p)| json!({ "id": t, "name": t, "method": "m", "priority": p })).collect::<Vec<_>>(),
    });
    if let (Value::Object(s), Value::Object(e)) = (&mut spec_json, extra) {
        s.extend(e);
    }
    let spec: WorkflowSpec = serde_json::from_value(spec_json).expect("spec");
    let record = WorkflowRecord {
        id: id.into(),
        name: id.into(),
        status: WorkflowStatus::Pending,
        spec: gleitzeit_store::JsonText::null(),
        base_dir: None,
        total_tasks: tasks.len() as u64,
        created_at: 1,
        started_at: None,
        finished_at: None,
        error: None,
        owner: Some("alice".into()),
    };
    let records = spec
        .tasks
        .iter()
        .map(|t| {
            let priority = i32::from(t.priority.level());
            TaskRecord::pending(
                id,
                t.id.as_str(),
                t.name.as_str(),
                t.method.as_str(),
                priority,
            )
        })
        .collect();
    (record, spec, records)
}

/// Stores (trivially) and commits a step.
pub(super) fn commit(m: &mut Machine, step: Step) -> Vec<Effect> {
    m.commit(step, now())
}

pub(super) fn add(m: &mut Machine, id: &str, tasks: &[(&str, &str)]) {
    add_with(m, id, tasks, json!({}), |_| {});
}

pub(super) fn add_with(
    m: &mut Machine,
    id: &str,
    tasks: &[(&str, &str)],
    extra: Value,
    edit: impl Fn(&mut WorkflowSpec),
) {
    let (record, mut spec, records) = workflow(id, tasks, extra);
    edit(&mut spec);
    assert!(m.add(record, &spec, records, now()));
}

/// The resolver says `ready` tasks of `wf` are ready.
pub(super) fn ready(m: &mut Machine, wf: &str, ready: &[&str]) -> Vec<Effect> {
    let step = ready_step(m, wf, ready);
    commit(m, step)
}

pub(super) fn lease_env(engine: &str) -> Envelope {
    let mut env = Envelope::new(
        Target::Component("qm-1".into()),
        events::LEASE_TASKS,
        json!({}),
    );
    env.source = engine.into();
    env
}

/// `engine` asks for `slots` tasks of method `m`, waiting up to 10 s.
pub(super) fn lease(m: &mut Machine, engine: &str, slots: u32) -> Vec<Effect> {
    let req = LeaseTasks {
        slots: BTreeMap::from([("m".to_string(), slots)]),
        wait_ms: 10_000,
        served: vec!["m".into()],
    };
    let step = m.lease_request(lease_env(engine), req, now());
    commit(m, step)
}

/// Task ids (with attempts) handed out in lease replies among `effects`.
pub(super) fn leased(effects: &[Effect]) -> Vec<(String, u32)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply { result: Ok(v), .. } => {
                serde_json::from_str::<LeasedTasks>(v.get()).ok()
            }
            _ => None,
        })
        .flat_map(|l| l.tasks.into_iter().map(|t| (t.task_id, t.attempt)))
        .collect()
}

pub(super) fn outcome(
    m: &mut Machine,
    engine: &str,
    wf: &str,
    task: &str,
    attempt: u32,
    result: Result<Value, GzError>,
) -> Vec<Effect> {
    let step = m.outcomes(engine, outcome_batch(wf, task, attempt, result), now());
    commit(m, step)
}

/// One task's outcome (from provider `p-1`) as a batch.
pub(super) fn outcome_batch(
    wf: &str,
    task: &str,
    attempt: u32,
    result: Result<Value, GzError>,
) -> TaskOutcomes {
    let (result, error) = match result {
        Ok(v) => (Some(JsonText::of_value(&v)), None),
        Err(e) => (None, Some(e)),
    };
    TaskOutcomes {
        lease: None,
        outcomes: vec![TaskOutcome {
            workflow_id: wf.into(),
            task_id: task.into(),
            attempt,
            result,
            error,
            provider_id: "p-1".into(),
            started_at: 0,
            finished_at: 0,
        }],
    }
}

pub(super) fn events_of(effects: &[Effect]) -> Vec<&'static str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Event { event, .. } => Some(*event),
            _ => None,
        })
        .collect()
}

pub(super) fn status(m: &Machine, wf: &str, task: &str) -> TaskStatus {
    let w = m.workflow(wf).expect("workflow in memory");
    w.tasks[w.position(task).expect("a task")].status
}

/// The counters always match the statuses, per workflow and (for the metrics) per method
/// over every workflow in memory.
pub(super) fn check_counts(m: &Machine) {
    let mut by_method: std::collections::HashMap<String, Counts> = Default::default();
    for id in m.ids() {
        let wf = m.workflow(&id).expect("listed");
        assert_eq!(wf.counts, Counts::of(&wf.tasks), "counts of {id}");
        for t in &wf.tasks {
            by_method
                .entry(t.method.to_string())
                .or_default()
                .add(t.status);
        }
    }
    for (method, counts) in m.figures.live() {
        let walked = by_method.remove(method).unwrap_or_default();
        assert_eq!(*counts, walked, "tasks of {method} in memory");
    }
    assert!(by_method.is_empty(), "uncounted methods {by_method:?}");
}

/// A sample of the machine's metrics: a value, or a histogram's count.
pub(super) fn metric(m: &Machine, name: &str, labels: &[(&str, &str)]) -> f64 {
    use gleitzeit_protocol::metrics::SampleValue;
    let families = m.metrics();
    let family = families.iter().find(|f| f.name == name).expect(name);
    let sample = family.samples.iter().find(|s| {
        s.labels.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
    });
    match sample.map(|s| &s.value) {
        Some(SampleValue::Value(v)) => *v,
        Some(SampleValue::Histogram(h)) => h.count as f64,
        None => 0.0,
    }
}

pub(super) fn tick(m: &mut Machine) -> Vec<Effect> {
    let step = m.tick(now());
    commit(m, step)
}

/// Lets `secs` seconds pass, ticking every second as the driver does (more often, really).
pub(super) async fn pass(m: &mut Machine, secs: u64) -> Vec<Effect> {
    let mut all = Vec::new();
    for _ in 0..secs {
        advance(Duration::from_secs(1)).await;
        all.extend(tick(m));
    }
    all
}

thread_local! {
    /// The moves applied on this thread (each paused-time test runs on one thread).
    static TAKEN: std::cell::RefCell<Vec<(TaskStatus, TaskStatus)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Called by `apply_task` for every move it applies.
pub(super) fn taken(from: TaskStatus, to: TaskStatus) {
    if from != to {
        TAKEN.with(|t| t.borrow_mut().push((from, to)));
    }
}

pub(super) fn retryable() -> GzError {
    GzError::new(ErrorCode::TaskTimeout, "slow").with_retryable(true)
}

#[tokio::test(start_paused = true)]
async fn a_task_runs_from_pending_to_completed_and_the_workflow_finishes_after_its_write() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal")]);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Pending);

    let fx = ready(&mut m, "w", &["a"]);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
    assert_eq!(events_of(&fx), [events::WORKFLOW_STARTED]);
    assert_eq!(
        m.workflow("w").map(|w| w.record.status),
        Some(WorkflowStatus::Running)
    );

    let fx = lease(&mut m, "e-1", 4);
    assert_eq!(leased(&fx), [("a".to_string(), 1)]);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Running);
    assert_eq!(events_of(&fx), [events::TASK_STARTED]);
    check_counts(&m);

    // The step that completes the last task carries the workflow's final record.
    let batch = outcome_batch("w", "a", 1, Ok(json!(42)));
    let step = m.outcomes("e-1", batch, now());
    let (workflows, tasks) = step.records();
    assert_eq!(tasks[0].status, TaskStatus::Completed);
    assert_eq!(workflows[0].status, WorkflowStatus::Completed);
    assert!(m.contains("w"), "nothing is applied before the write");
    let fx = commit(&mut m, step);
    assert_eq!(
        events_of(&fx),
        [
            events::TASK_COMPLETED,
            events::WORKFLOW_PROGRESS,
            events::WORKFLOW_COMPLETED
        ]
    );
    assert!(fx
        .iter()
        .any(|e| matches!(e, Effect::Finished { wf } if &**wf == "w")));
    assert!(
        !fx.iter().any(|e| matches!(e, Effect::TellResolver { .. })),
        "a finished workflow needs no resolver"
    );
    let done = fx.iter().find_map(|e| match e {
        Effect::Event { event, payload, .. } if *event == events::WORKFLOW_COMPLETED => {
            Some(parsed(payload))
        }
        _ => None,
    });
    assert_eq!(
        done.map(|p| p["task_results"]["a"].clone()),
        Some(json!(42))
    );
    assert!(!m.contains("w"));
}

#[tokio::test(start_paused = true)]
async fn a_finished_task_tells_the_resolver_while_others_remain() {
    let mut m = machine();
    add_with(
        &mut m,
        "w",
        &[("a", "normal"), ("b", "normal")],
        json!({}),
        |spec| spec.tasks[1].dependencies = vec!["a".into()],
    );
    ready(&mut m, "w", &["a"]);
    lease(&mut m, "e-1", 1);
    let fx = outcome(&mut m, "e-1", "w", "a", 1, Ok(json!("ok")));
    assert_eq!(told(&fx), [vec!["a".to_string()]]);
    assert_eq!(status(&m, "w", "b"), TaskStatus::Pending);
    check_counts(&m);
}

/// An event payload as a JSON tree.
pub(super) fn parsed(payload: &super::EventPayload) -> Value {
    serde_json::from_str(payload.unnumbered().get()).expect("event payloads are JSON")
}

/// The task ids each `TellResolver` effect names.
pub(super) fn told(fx: &[Effect]) -> Vec<Vec<String>> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::TellResolver { finished, .. } => {
                Some(finished.iter().map(|f| f.task_id.clone()).collect())
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_resolver_hears_only_of_ends_that_something_waits_for() {
    let mut m = machine();
    // c depends on a; b and c have no dependents.
    add_with(
        &mut m,
        "w",
        &[("a", "normal"), ("b", "normal"), ("c", "normal")],
        json!({}),
        |spec| spec.tasks[2].dependencies = vec!["a".into()],
    );
    ready(&mut m, "w", &["a", "b"]);
    lease(&mut m, "e-1", 2);
    let fx = outcome(&mut m, "e-1", "w", "b", 1, Ok(json!("ok")));
    assert!(told(&fx).is_empty(), "nothing waits for b");
    let err = GzError::new(ErrorCode::PythonException, "boom").with_retryable(false);
    let fx = outcome(&mut m, "e-1", "w", "a", 1, Err(err));
    assert_eq!(
        told(&fx),
        [vec!["a".to_string()]],
        "c waits for a, failed or not"
    );
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn work_goes_out_by_priority_then_in_arrival_order() {
    let mut m = machine();
    add(
        &mut m,
        "w",
        &[
            ("l", "low"),
            ("n1", "normal"),
            ("u", "urgent"),
            ("n2", "normal"),
            ("h", "high"),
        ],
    );
    ready(&mut m, "w", &["l", "n1", "u", "n2", "h"]);
    let order: Vec<String> = (0..5)
        .flat_map(|_| leased(&lease(&mut m, "e-1", 1)))
        .map(|(t, _)| t)
        .collect();
    assert_eq!(order, ["u", "h", "n1", "n2", "l"]);
}

/// The tasks of the lease answers among `effects`, whole.
pub(super) fn leased_tasks(effects: &[Effect]) -> Vec<gleitzeit_protocol::payloads::ExecuteTask> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reply { result: Ok(v), .. } => {
                serde_json::from_str::<LeasedTasks>(v.get()).ok()
            }
            _ => None,
        })
        .flat_map(|l| l.tasks)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn tasks_go_out_with_their_files_and_one_answer_carries_a_bounded_amount() {
    use gleitzeit_workflow::attachments::{digest, Attachment};
    let mut m = machine();
    // Three tasks name one small shared script and a 7 MiB file of their own each (about
    // 9.3 MiB as base64): two fit in one answer, the third waits for the next request.
    let shared = b"result = 1\n".to_vec();
    let own = |i: u8| vec![i; 7 << 20];
    add_with(
        &mut m,
        "w",
        &[("a", "normal"), ("b", "normal"), ("c", "normal")],
        json!({}),
        |spec| {
            spec.attachments
                .insert(digest(&shared), Attachment::of(&shared));
            for (i, task) in spec.tasks.iter_mut().enumerate() {
                let bytes = own(i as u8);
                spec.attachments
                    .insert(digest(&bytes), Attachment::of(&bytes));
                task.files
                    .insert("s.py".into(), FileRef::Attached(digest(&shared)));
                task.files
                    .insert("own.bin".into(), FileRef::Attached(digest(&bytes)));
            }
        },
    );
    ready(&mut m, "w", &["a", "b", "c"]);
    let first = leased_tasks(&lease(&mut m, "e-1", 3));
    let ids: Vec<&str> = first.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let own_file = |t: &gleitzeit_protocol::payloads::ExecuteTask| {
        t.files
            .iter()
            .find(|f| f.path == "own.bin")
            .and_then(|f| f.content.clone())
    };
    assert_eq!(own_file(&first[1]), Some(Attachment::of(&own(1)).content));
    assert_eq!(
        first[0]
            .files
            .iter()
            .find(|f| f.path == "s.py")
            .map(|f| f.sha256.clone()),
        Some(Some(digest(&shared)))
    );
    assert_eq!(status(&m, "w", "c"), TaskStatus::Queued);
    let second = leased_tasks(&lease(&mut m, "e-1", 3));
    assert_eq!(second.len(), 1);
    assert_eq!(own_file(&second[0]), Some(Attachment::of(&own(2)).content));
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn a_lease_request_waits_for_work_and_gets_an_empty_answer_when_its_wait_is_over() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal")]);
    let fx = lease(&mut m, "e-1", 1);
    assert!(fx.is_empty(), "no work: the request waits");
    // Work arrives while it waits: served at once.
    ready(&mut m, "w", &["a"]);
    assert!(m.may_serve());
    let step = m.serve(now());
    let fx = commit(&mut m, step);
    assert_eq!(leased(&fx), [("a".to_string(), 1)]);

    // A second request with nothing to do is answered empty after its 10 s.
    assert!(lease(&mut m, "e-2", 1).is_empty());
    advance(Duration::from_secs(9)).await;
    assert!(tick(&mut m).is_empty());
    advance(Duration::from_secs(2)).await;
    let fx = tick(&mut m);
    assert_eq!(fx.len(), 1);
    let reply = match &fx[0] {
        Effect::Reply { result: Ok(v), .. } => serde_json::from_str::<LeasedTasks>(v.get()).ok(),
        _ => None,
    };
    assert_eq!(
        reply.map(|r| r.tasks.len()),
        Some(0),
        "answered with no tasks"
    );
}

/// The resolver's answer that makes `ids` of `wf` ready, as a step not yet committed.
fn ready_step(m: &Machine, wf: &str, ids: &[&str]) -> Step {
    m.resolution(wf, resolution(ids), now())
}

/// A resolver's answer: `ids` are ready, each with parameters `{"x": <id>}`.
pub(super) fn resolution(ids: &[&str]) -> Resolution {
    Resolution {
        resolver_id: "r-1".into(),
        ready: ids
            .iter()
            .map(|t| ReadyTask {
                task_id: t.to_string(),
                params: JsonText::of_value(&json!({ "x": t })),
            })
            .collect(),
        ..Resolution::default()
    }
}

#[tokio::test(start_paused = true)]
async fn tasks_a_step_makes_ready_go_to_a_waiting_lease_in_that_same_step() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "low"), ("b", "high"), ("c", "normal")]);
    assert!(
        lease(&mut m, "e-1", 2).is_empty(),
        "nothing ready: it waits"
    );

    // Not stored (the write failed): nothing moved, and the request waits again.
    let mut step = ready_step(&m, "w", &["a", "b", "c"]);
    m.serve_fresh(&mut step, now());
    assert!(
        m.abort(step).is_empty(),
        "no lease answer without the write"
    );
    assert_eq!(status(&m, "w", "b"), TaskStatus::Pending);

    // Stored: one step makes them ready and hands the best two to the waiting request.
    let mut step = ready_step(&m, "w", &["a", "b", "c"]);
    m.serve_fresh(&mut step, now());
    let by_id: BTreeMap<String, TaskStatus> = step
        .task_records()
        .iter()
        .map(|t| (t.task_id.to_string(), t.status))
        .collect();
    assert_eq!(
        by_id,
        BTreeMap::from([
            ("a".to_string(), TaskStatus::Queued),
            ("b".to_string(), TaskStatus::Running),
            ("c".to_string(), TaskStatus::Running),
        ]),
        "one record per task, as it ends the step"
    );
    let fx = commit(&mut m, step);
    assert_eq!(leased(&fx), [("b".to_string(), 1), ("c".to_string(), 1)]);
    let started = events_of(&fx)
        .into_iter()
        .filter(|e| *e == events::TASK_STARTED)
        .count();
    assert_eq!(started, 2);
    assert_eq!(status(&m, "w", "a"), TaskStatus::Queued);
    check_counts(&m);
    assert_eq!(
        metric(&m, "gleitzeit_task_queue_wait_seconds", &[("method", "m")]),
        2.0,
        "their wait in the queue (none) is measured too"
    );

    // `a` went into the queue the usual way, and its lease works as before.
    assert!(!m.may_serve(), "no request waits");
    assert_eq!(leased(&lease(&mut m, "e-2", 1)), [("a".to_string(), 1)]);
    // The tasks handed out in the step are held by their engine like any other.
    outcome(&mut m, "e-1", "w", "b", 1, Ok(json!({"result": 1})));
    assert_eq!(status(&m, "w", "b"), TaskStatus::Completed);
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn a_newer_request_of_an_engine_supersedes_its_waiting_one() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal")]);
    assert!(lease(&mut m, "e-1", 1).is_empty());
    let fx = lease(&mut m, "e-1", 2);
    assert_eq!(fx.len(), 1, "the old request is answered empty");
    ready(&mut m, "w", &["a"]);
    let step = m.serve(now());
    assert_eq!(leased(&commit(&mut m, step)).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_silent_engine_loses_its_lease_and_one_that_speaks_keeps_it() {
    let mut m = machine();
    add(&mut m, "w", &[("a", "normal"), ("b", "normal")]);
    ready(&mut m, "w", &["a", "b"]);
    lease(&mut m, "e-1", 1);
    lease(&mut m, "e-2", 1);
    for _ in 0..4 {
        pass(&mut m, 5).await;
        m.engine_heard("e-2", now());
    }
    // 20 s: e-1 was silent beyond the 15 s lease; e-2 spoke every 5 s.
    let w = m.workflow("w").expect("w");
    let by_engine: Vec<(TaskStatus, u32)> =
        w.tasks.iter().map(|t| (t.status, t.attempts)).collect();
    assert!(
        by_engine.contains(&(TaskStatus::Queued, 1)),
        "{by_engine:?}"
    );
    assert!(
        by_engine.contains(&(TaskStatus::Running, 1)),
        "{by_engine:?}"
    );
    check_counts(&m);
    // The requeued task goes out again as attempt 2; a late outcome of attempt 1 is ignored.
    let again = leased(&lease(&mut m, "e-3", 1));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1, 2);
    let (task, _) = &again[0];
    let fx = outcome(&mut m, "e-1", "w", task, 1, Ok(json!("late")));
    assert!(events_of(&fx).is_empty());
    assert_eq!(status(&m, "w", task), TaskStatus::Running);
}

/// Drives tasks through every move of the table (`status::MOVES`), each by the operation
/// that makes it in the running system, and checks that nothing else moved.
#[tokio::test(start_paused = true)]
async fn every_move_of_the_table_is_taken() {
    use TaskStatus::*;
    TAKEN.with(|t| t.borrow_mut().clear());
    let mut m = machine();
    // pending → queued → running → completed.
    add(&mut m, "ok", &[("a", "normal")]);
    ready(&mut m, "ok", &["a"]);
    lease(&mut m, "e-1", 1);
    outcome(&mut m, "e-1", "ok", "a", 1, Ok(json!(1)));
    // running → retrying → queued, then running → failed (policy used up).
    add_with(&mut m, "retry", &[("a", "normal")], json!({}), |spec| {
        spec.tasks[0].retry = RetryPolicy {
            max_attempts: 2,
            backoff: Backoff::Fixed,
            base_delay: 1.0,
            max_delay: 1.0,
            jitter: false,
        };
    });
    ready(&mut m, "retry", &["a"]);
    lease(&mut m, "e-1", 1);
    outcome(&mut m, "e-1", "retry", "a", 1, Err(retryable()));
    pass(&mut m, 2).await;
    lease(&mut m, "e-1", 1);
    outcome(&mut m, "e-1", "retry", "a", 2, Err(retryable()));
    // running → queued: the engine holding it is lost.
    add(&mut m, "lost", &[("a", "normal")]);
    ready(&mut m, "lost", &["a"]);
    lease(&mut m, "e-2", 1);
    let step = m.engine_lost("e-2", now());
    commit(&mut m, step);
    // pending → failed (parameters), pending → skipped (dependency), the resolver says.
    add(
        &mut m,
        "blocked",
        &[("a", "normal"), ("b", "normal"), ("c", "normal")],
    );
    let res = Resolution {
        failed: vec![BlockedTask {
            task_id: "a".into(),
            error: GzError::new(ErrorCode::SubstitutionFailed, "no such field"),
        }],
        skipped: vec![BlockedTask {
            task_id: "b".into(),
            error: GzError::new(ErrorCode::DependencyFailed, "a failed"),
        }],
        ..Resolution::default()
    };
    let step = m.resolution("blocked", res, now());
    commit(&mut m, step);
    // pending → completed: a fan-out template joins its members (no items here).
    add(&mut m, "join", &[("t", "normal")]);
    let res = Resolution {
        joined: vec![gleitzeit_protocol::payloads::JoinedTask {
            task_id: "t".into(),
            result: JsonText::of_value(
                &json!({"result": [], "results": [], "completed": 0, "failed": 0}),
            ),
        }],
        ..Resolution::default()
    };
    let step = m.resolution("join", res, now());
    commit(&mut m, step);
    // Cancelled from pending, queued, running and retrying (a machine of its own, so the
    // lease takes these tasks).
    let mut c = machine();
    add_with(
        &mut c,
        "cancel",
        &[
            ("p", "normal"),
            ("q", "normal"),
            ("r", "normal"),
            ("t", "normal"),
        ],
        json!({}),
        |spec| {
            for t in &mut spec.tasks {
                t.retry.max_attempts = 3;
            }
        },
    );
    ready(&mut c, "cancel", &["q", "r", "t"]);
    lease(&mut c, "e-3", 2);
    let running: Vec<String> = ["q", "r", "t"]
        .into_iter()
        .filter(|t| status(&c, "cancel", t) == Running)
        .map(str::to_string)
        .collect();
    outcome(&mut c, "e-3", "cancel", &running[0], 1, Err(retryable()));
    assert_eq!(status(&c, "cancel", &running[0]), Retrying);
    let step = c.cancel("cancel", now()).expect("here");
    commit(&mut c, step);
    // queued → failed: nobody serves the method within the grace.
    let mut late = machine_with_grace(Duration::from_secs(1));
    add(&mut late, "unserved", &[("a", "normal")]);
    ready(&mut late, "unserved", &["a"]);
    pass(&mut late, 3).await;
    for machine in [&m, &c, &late] {
        check_counts(machine);
    }
    let finished = |m: &Machine, status: &str| {
        metric(
            m,
            "gleitzeit_tasks_total",
            &[("method", "m"), ("status", status)],
        )
    };
    assert_eq!(finished(&m, "completed"), 2.0, "a result; a join");
    assert_eq!(finished(&m, "failed"), 2.0, "retries used up; parameters");
    assert_eq!(finished(&m, "skipped"), 1.0);
    assert_eq!(finished(&c, "cancelled"), 4.0);
    assert_eq!(finished(&late, "failed"), 1.0);
    assert_eq!(
        metric(&m, "gleitzeit_task_retries_total", &[("method", "m")]),
        1.0
    );
    assert_eq!(
        metric(&m, "gleitzeit_task_requeues_total", &[("method", "m")]),
        1.0
    );
    assert_eq!(
        metric(&m, "gleitzeit_queue_depth", &[("method", "m")]),
        1.0,
        "the lost task"
    );
    assert_eq!(metric(&m, "gleitzeit_leases_outstanding", &[]), 0.0);
    assert_eq!(
        metric(&m, "gleitzeit_workflows_active", &[]),
        2.0,
        "lost, blocked"
    );
    let workflows = |m: &Machine, s: &str| metric(m, "gleitzeit_workflows_total", &[("status", s)]);
    assert_eq!(workflows(&m, "completed"), 2.0, "ok, join");
    assert_eq!(workflows(&m, "failed"), 1.0);
    assert_eq!(workflows(&c, "cancelled"), 1.0);
    assert_eq!(
        metric(&m, "gleitzeit_task_duration_seconds", &[("method", "m")]),
        3.0,
        "attempts that ended with an outcome: one completed, two failed"
    );
    let taken: std::collections::BTreeSet<String> = TAKEN
        .with(|t| t.borrow().clone())
        .into_iter()
        .map(|(f, t)| format!("{f:?}->{t:?}"))
        .collect();
    let table: std::collections::BTreeSet<String> = status::MOVES
        .iter()
        .map(|(f, t)| format!("{f:?}->{t:?}"))
        .collect();
    assert_eq!(taken, table);
}
