//! Unit tests of primed tasks: which tasks the plan primes, with what, and only once.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::tests::{done, spec};
use super::*;
use serde_json::json;

fn primed(res: &Resolution) -> Vec<(&str, &str)> {
    res.primed
        .iter()
        .map(|p| (p.task_id.as_str(), p.after.as_str()))
        .collect()
}

const CHAIN: &str = r#"
name: chain
tasks:
  - id: a
    method: python/execute
    parameters: { code: "result = 1" }
  - id: b
    name: second
    method: python/execute
    parameters: { code: "result = 2", context: { x: "${a.result}" } }
  - id: c
    method: python/execute
    parameters: { code: "result = 3", context: { y: "${second.result}", t: "got ${b.result}" } }
  - id: d
    method: python/execute
    dependencies: [c]
    parameters: { code: "result = 4" }
"#;

#[test]
fn each_task_of_a_chain_is_primed_once_its_dependency_is_released() {
    let (mut plan, res) = Plan::build(spec(CHAIN), &[], &[]).expect("plan");
    assert_eq!(
        primed(&res),
        [("b", "a"), ("c", "b"), ("d", "c")],
        "by id and by name, and a plain dependency reads nothing: the whole short chain"
    );
    assert_eq!(
        res.primed[0].params["context"]["x"],
        json!("${a.result}"),
        "the queue-manager substitutes"
    );
    let res = plan.finish(&[done("a", json!({"result": 1}))]);
    assert_eq!(res.ready.len(), 1, "b is still reported ready");
    assert!(res.primed.is_empty(), "primed once");
    let res = plan.finish(&[done("b", json!({"result": 2}))]);
    assert!(res.primed.is_empty());
    let res = plan.finish(&[done("c", json!({"result": 3}))]);
    assert!(res.primed.is_empty());
    assert_eq!(res.ready[0].task_id, "d");
}

/// A chain of `n` plain tasks t0 → t1 → ….
fn long_chain(n: usize) -> String {
    let mut yaml = String::from("name: long\ntasks:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - id: t{i}\n    method: python/execute\n    parameters: {{ code: \"result = {i}\" }}\n"
        ));
        if i > 0 {
            yaml.push_str(&format!("    dependencies: [t{}]\n", i - 1));
        }
    }
    yaml
}

#[test]
fn a_long_chain_is_primed_a_bounded_stretch_ahead_of_its_released_task() {
    let (mut plan, res) = Plan::build(spec(&long_chain(30)), &[], &[]).expect("plan");
    let ahead: Vec<(String, String)> = (1..=PRIME_DEPTH)
        .map(|i| (format!("t{i}"), format!("t{}", i - 1)))
        .collect();
    let got: Vec<(String, String)> = primed(&res)
        .into_iter()
        .map(|(t, a)| (t.to_string(), a.to_string()))
        .collect();
    assert_eq!(got, ahead, "t1..t{PRIME_DEPTH} after t0, which runs");
    // The queue-manager ran t0..t3 on its primes and tells of them together: t4 is
    // released (it runs already) and the stretch reaches PRIME_DEPTH past it.
    let finished: Vec<FinishedTask> = (0..4)
        .map(|i| done(&format!("t{i}"), json!({ "result": i })))
        .collect();
    let res = plan.finish(&finished);
    assert_eq!(
        res.ready
            .iter()
            .map(|r| r.task_id.as_str())
            .collect::<Vec<_>>(),
        ["t1", "t2", "t3", "t4"]
    );
    let next: Vec<String> = res.primed.iter().map(|p| p.task_id.clone()).collect();
    let want: Vec<String> = (PRIME_DEPTH + 1..=4 + PRIME_DEPTH)
        .map(|i| format!("t{i}"))
        .collect();
    assert_eq!(next, want);
}

#[test]
fn a_task_reading_another_result_than_its_last_dependency_is_not_primed() {
    let yaml = r#"
name: reads
tasks:
  - id: a
    method: python/execute
    parameters: { code: "result = 1" }
  - id: b
    method: python/execute
    parameters: { code: "result = 2" }
  - id: c
    method: python/execute
    dependencies: [a]
    parameters: { code: "result = 3", context: { x: "${b.result}" } }
"#;
    let (mut plan, res) = Plan::build(spec(yaml), &[], &[]).expect("plan");
    assert!(res.primed.is_empty(), "c waits for a and b: {res:?}");
    let res = plan.finish(&[done("b", json!({"result": 2}))]);
    assert!(
        res.primed.is_empty(),
        "a is all c waits for, but c reads b's result: {res:?}"
    );
    // Its release is as before.
    let res = plan.finish(&[done("a", json!({"result": 1}))]);
    assert_eq!(res.ready[0].params.to_value()["context"]["x"], json!(2));
}

#[test]
fn a_task_waiting_for_two_open_dependencies_is_primed_when_one_ends() {
    let yaml = r#"
name: join
tasks:
  - id: a
    method: python/execute
    parameters: { code: "result = 1" }
  - id: b
    method: python/execute
    parameters: { code: "result = 2" }
  - id: c
    method: python/execute
    dependencies: [a, b]
    parameters: { code: "result = 3" }
"#;
    let (mut plan, res) = Plan::build(spec(yaml), &[], &[]).expect("plan");
    assert!(res.primed.is_empty());
    let res = plan.finish(&[done("b", json!({"result": 2}))]);
    assert_eq!(primed(&res), [("c", "a")]);
    let res = plan.finish(&[done("a", json!({"result": 1}))]);
    assert!(res.primed.is_empty(), "primed once");
    assert_eq!(res.ready[0].task_id, "c");
}

#[test]
fn fan_outs_their_readers_and_wide_releases_are_not_primed() {
    let fan = r#"
name: fan
tasks:
  - id: list
    method: python/execute
    parameters: { code: "result = [1, 2]" }
  - id: each
    method: python/execute
    batch: { from: "${list.result}", max_items: 3 }
    parameters: { code: "result = 1", context: { item: "${item}" } }
  - id: after
    method: python/execute
    parameters: { code: "result = 1", context: { all: "${each.result}" } }
"#;
    let (mut plan, res) = Plan::build(spec(fan), &[], &[]).expect("plan");
    assert!(res.primed.is_empty(), "a template is never primed: {res:?}");
    let res = plan.finish(&[done("list", json!({"result": [1, 2]}))]);
    assert!(res.primed.is_empty(), "nor a template's reader: {res:?}");

    let mut wide = String::from(
        "name: wide\ntasks:\n  - id: root\n    method: python/execute\n    parameters: { code: \"result = 1\" }\n",
    );
    for k in 0..=PRIME_MAX_SIBLINGS {
        wide.push_str(&format!(
            "  - id: t{k}\n    method: python/execute\n    dependencies: [root]\n    parameters: {{ code: \"result = 1\" }}\n"
        ));
    }
    let (_, res) = Plan::build(spec(&wide), &[], &[]).expect("plan");
    assert!(
        res.primed.is_empty(),
        "more than {PRIME_MAX_SIBLINGS} dependents: none primed"
    );
}

#[test]
fn a_rebuilt_plan_primes_the_next_task_again() {
    let finished = [done("a", json!({"result": 1}))];
    let (_, res) = Plan::build(spec(CHAIN), &finished, &[]).expect("plan");
    assert_eq!(res.ready[0].task_id, "b");
    assert_eq!(primed(&res), [("c", "b"), ("d", "c")]);
}

#[test]
fn many_chains_in_parallel_are_primed_deep_only_within_a_budget() {
    let mut yaml = String::from("name: wide\ntasks:\n");
    for c in 0..20 {
        for k in 0..20 {
            yaml.push_str(&format!(
                "  - id: c{c}_{k}\n    method: python/execute\n    parameters: {{ code: \"result = 1\" }}\n"
            ));
            if k > 0 {
                yaml.push_str(&format!("    dependencies: [c{c}_{}]\n", k - 1));
            }
        }
    }
    let (_, res) = Plan::build(spec(&yaml), &[], &[]).expect("plan");
    let first_links = res
        .primed
        .iter()
        .filter(|p| p.task_id.ends_with("_1"))
        .count();
    assert_eq!(first_links, 20, "every chain's next task is primed");
    assert_eq!(
        res.primed.len() - first_links,
        DEEP_PRIMES,
        "links further on: within the budget"
    );
}
