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
    assert_eq!(primed(&res), [("b", "a")]);
    assert_eq!(
        res.primed[0].params["context"]["x"],
        json!("${a.result}"),
        "the queue-manager substitutes"
    );
    let res = plan.finish(&[done("a", json!({"result": 1}))]);
    assert_eq!(res.ready.len(), 1, "b is still reported ready");
    assert_eq!(primed(&res), [("c", "b")], "by id and by name: b only");
    let res = plan.finish(&[done("b", json!({"result": 2}))]);
    assert_eq!(
        primed(&res),
        [("d", "c")],
        "a plain dependency reads nothing"
    );
    let res = plan.finish(&[done("c", json!({"result": 3}))]);
    assert!(res.primed.is_empty());
    assert_eq!(res.ready[0].task_id, "d");
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
    assert_eq!(primed(&res), [("c", "b")]);
}
