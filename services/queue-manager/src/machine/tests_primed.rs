//! Primed tasks: queued in the step that completes their dependency, with its result
//! substituted; dropped when that dependency has already ended or fails.

use gleitzeit_protocol::payloads::PrimedTask;
use gleitzeit_store::TaskStatus;
use serde_json::{json, Value};

use super::primed::TELL_EVERY;
use super::tests::{
    add_with, check_counts, commit, lease, leased, machine, now, outcome, ready, resolution,
    retryable, status, told,
};
use super::Machine;

/// `w`: a → b → c, b's parameters reading a's result (by id and by name).
fn chain(m: &mut Machine) {
    add_with(
        m,
        "w",
        &[("a", "normal"), ("b", "normal"), ("c", "normal")],
        json!({}),
        |spec| {
            spec.tasks[1].dependencies = vec!["a".into()];
            spec.tasks[2].dependencies = vec!["b".into()];
        },
    );
}

/// The resolver's answer: `ready` tasks, and `primes` as (task, after, params).
fn answer(m: &mut Machine, ready: &[&str], primes: &[(&str, &str, Value)]) {
    let mut res = resolution(ready);
    res.primed = primes
        .iter()
        .map(|(t, after, params)| PrimedTask {
            task_id: t.to_string(),
            after: after.to_string(),
            params: params.clone(),
        })
        .collect();
    m.keep_primes("w", &mut res);
    assert!(res.primed.is_empty(), "the machine keeps them");
    let step = m.resolution("w", res, now());
    commit(m, step);
}

fn params(m: &Machine, task: &str) -> Option<Value> {
    let w = m.workflow("w").expect("in memory");
    w.tasks[w.position(task).expect("a task")].params_value()
}

#[tokio::test(start_paused = true)]
async fn a_primed_task_is_queued_with_the_result_in_the_step_that_completes_its_dependency() {
    let mut m = machine();
    chain(&mut m);
    let b = json!({ "code": "x", "context": { "v": "${a.result.n}", "t": "got ${a}" } });
    answer(&mut m, &["a"], &[("b", "a", b)]);
    assert_eq!(status(&m, "w", "b"), TaskStatus::Pending);
    lease(&mut m, "e-1", 1);
    let fx = outcome(&mut m, "e-1", "w", "a", 1, Ok(json!({ "n": 7 })));
    assert_eq!(status(&m, "w", "b"), TaskStatus::Queued);
    assert_eq!(
        params(&m, "b"),
        Some(json!({ "code": "x", "context": { "v": 7, "t": "got {\"n\":7}" } }))
    );
    assert!(
        told(&fx).is_empty(),
        "a's one dependent ran on its prime: the resolver hears of a later"
    );
    assert_eq!(m.workflow("w").expect("w").untold.len(), 1);
    assert!(m.workflow("w").expect("w").primed.is_empty());
    let fx = lease(&mut m, "e-1", 1);
    assert_eq!(leased(&fx), [("b".to_string(), 1)]);
    assert_eq!(params(&m, "b").expect("kept")["context"]["v"], json!(7));
    // b's end is not covered (c is not primed): the resolver hears of both, in order.
    let fx = outcome(&mut m, "e-1", "w", "b", 1, Ok(json!(2)));
    assert_eq!(told(&fx), [vec!["a".to_string(), "b".to_string()]]);
    assert!(m.workflow("w").expect("w").untold.is_empty());
    // Its report comes later and changes nothing for b.
    answer(&mut m, &["b", "c"], &[]);
    assert_eq!(status(&m, "w", "b"), TaskStatus::Completed);
    assert_eq!(status(&m, "w", "c"), TaskStatus::Queued);
    check_counts(&m);
}

/// `w`: t0 → t1 → … → t9, every link primed ahead.
fn long_chain(m: &mut Machine) {
    let names: Vec<(String, &str)> = (0..10).map(|i| (format!("t{i}"), "normal")).collect();
    let tasks: Vec<(&str, &str)> = names.iter().map(|(n, p)| (n.as_str(), *p)).collect();
    add_with(m, "w", &tasks, json!({}), |spec| {
        for i in 1..10 {
            spec.tasks[i].dependencies = vec![format!("t{}", i - 1)];
        }
    });
}

#[tokio::test(start_paused = true)]
async fn ends_covered_by_primes_reach_the_resolver_a_few_at_a_time() {
    let mut m = machine();
    long_chain(&mut m);
    let primes: Vec<(String, String, Value)> = (1..10)
        .map(|i| {
            (
                format!("t{i}"),
                format!("t{}", i - 1),
                json!({ "code": "x" }),
            )
        })
        .collect();
    let primes: Vec<(&str, &str, Value)> = primes
        .iter()
        .map(|(t, a, p)| (t.as_str(), a.as_str(), p.clone()))
        .collect();
    answer(&mut m, &["t0"], &primes);
    let mut told_so_far: Vec<Vec<String>> = Vec::new();
    for i in 0..10 {
        let fx = lease(&mut m, "e-1", 1);
        assert_eq!(
            leased(&fx),
            [(format!("t{i}"), 1)],
            "t{i} runs on its prime"
        );
        let fx = outcome(&mut m, "e-1", "w", &format!("t{i}"), 1, Ok(json!(i)));
        told_so_far.extend(told(&fx));
    }
    let names = |r: std::ops::Range<usize>| r.map(|i| format!("t{i}")).collect::<Vec<_>>();
    assert_eq!(
        told_so_far,
        [names(0..TELL_EVERY), names(TELL_EVERY..2 * TELL_EVERY)],
        "told {TELL_EVERY} at a time; the last end (nothing depends on it) and the one \
         before it need not be told: the workflow is done"
    );
    assert_eq!(
        m.workflow("w").map(|w| w.record.status),
        None,
        "completed and dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_prime_whose_dependency_already_ended_is_dropped() {
    let mut m = machine();
    chain(&mut m);
    ready(&mut m, "w", &["a"]);
    lease(&mut m, "e-1", 1);
    outcome(&mut m, "e-1", "w", "a", 1, Ok(json!(1)));
    // A late answer primes b on a, which has completed: the resolver decides b itself.
    answer(&mut m, &[], &[("b", "a", json!({}))]);
    assert_eq!(status(&m, "w", "b"), TaskStatus::Pending);
    assert!(m.workflow("w").expect("w").primed.is_empty());
    answer(&mut m, &["b"], &[]);
    assert_eq!(status(&m, "w", "b"), TaskStatus::Queued);
}

#[tokio::test(start_paused = true)]
async fn a_failed_or_retried_dependency_does_not_fire_its_prime() {
    let mut m = machine();
    add_with(
        &mut m,
        "w",
        &[("a", "normal"), ("b", "normal")],
        json!({ "on_failure": "continue" }),
        |spec| {
            spec.tasks[1].dependencies = vec!["a".into()];
            spec.tasks[0].retry = gleitzeit_workflow::RetryPolicy {
                max_attempts: 2,
                backoff: gleitzeit_workflow::Backoff::Fixed,
                base_delay: 3.0,
                max_delay: 60.0,
                jitter: false,
            };
        },
    );
    answer(&mut m, &["a"], &[("b", "a", json!({}))]);
    lease(&mut m, "e-1", 1);
    outcome(&mut m, "e-1", "w", "a", 1, Err(retryable()));
    assert_eq!(status(&m, "w", "a"), TaskStatus::Retrying);
    assert_eq!(status(&m, "w", "b"), TaskStatus::Pending);
    assert_eq!(
        m.workflow("w").expect("w").primed.len(),
        1,
        "kept for the retry"
    );
    super::tests::pass(&mut m, 5).await;
    lease(&mut m, "e-1", 1);
    outcome(&mut m, "e-1", "w", "a", 2, Err(retryable()));
    assert_eq!(status(&m, "w", "a"), TaskStatus::Failed);
    assert_eq!(
        status(&m, "w", "b"),
        TaskStatus::Pending,
        "the resolver skips it"
    );
    assert!(m.workflow("w").expect("w").primed.is_empty());
    check_counts(&m);
}

#[tokio::test(start_paused = true)]
async fn a_prime_that_does_not_substitute_is_left_to_the_resolver() {
    let mut m = machine();
    chain(&mut m);
    let b = json!({ "v": "${a.result.missing}" });
    answer(&mut m, &["a"], &[("b", "a", b)]);
    lease(&mut m, "e-1", 1);
    outcome(&mut m, "e-1", "w", "a", 1, Ok(json!({ "n": 7 })));
    assert_eq!(status(&m, "w", "b"), TaskStatus::Pending);
}

/// What `manager::outcomes_and_lease` does: an engine's outcomes and the lease request that
/// came with them are one step, so the link they make ready goes out in the answer after
/// one write.
#[tokio::test(start_paused = true)]
async fn outcomes_and_the_lease_request_with_them_are_one_write() {
    use gleitzeit_protocol::payloads::LeaseTasks;
    let mut m = machine();
    chain(&mut m);
    answer(&mut m, &["a"], &[("b", "a", json!({ "code": "x" }))]);
    assert_eq!(leased(&lease(&mut m, "e-1", 1)), [("a".to_string(), 1)]);
    let batch = super::tests::outcome_batch("w", "a", 1, Ok(json!(1)));
    let next = LeaseTasks {
        slots: std::collections::BTreeMap::from([("m".to_string(), 1)]),
        wait_ms: 10_000,
        served: vec!["m".into()],
    };
    let mut step = m.outcomes("e-1", batch, now());
    m.lease_request_into(&mut step, super::tests::lease_env("e-1"), next, now());
    m.serve_fresh(&mut step, now());
    let fx = commit(&mut m, step);
    assert_eq!(
        leased(&fx),
        [("b".to_string(), 1)],
        "b goes out in the same answer"
    );
    assert_eq!(status(&m, "w", "a"), TaskStatus::Completed);
    assert_eq!(status(&m, "w", "b"), TaskStatus::Running);
    check_counts(&m);
}
