//! Unit tests of the plan: release order, substitution, skips, batches, fan-outs, rebuilds.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use super::*;
use gleitzeit_workflow::{parse_workflow, MethodCatalog, WorkflowSpec};
use serde_json::json;

pub(super) fn spec(yaml: &str) -> WorkflowSpec {
    parse_workflow(yaml, &MethodCatalog::builtin())
        .expect("valid")
        .spec
}

pub(super) fn done(id: &str, result: Value) -> FinishedTask {
    FinishedTask {
        task_id: id.into(),
        status: "completed".into(),
        result: Some(JsonText::of(&result).expect("json")),
    }
}

const CHAIN: &str = r#"
name: chain
tasks:
  - id: a
    method: python/execute
    parameters: { code: "result = [1, 2, 3]" }
  - id: b
    method: python/execute
    parameters: { code: "result = sum(context['xs'])", context: { xs: "${a.result}", first: "${a.result[0]}", text: "got ${a.result}" } }
  - id: c
    method: python/execute
    dependencies: [b]
    parameters: { code: "result = 1" }
"#;

#[test]
fn chain_releases_in_order_with_type_preserving_substitution() {
    let (mut plan, res) = Plan::build(spec(CHAIN), &[], &[]).expect("plan");
    assert_eq!(
        res.ready
            .iter()
            .map(|r| r.task_id.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
    let res = plan.finish(&[done("a", json!({"result": [1, 2, 3]}))]);
    assert_eq!(res.ready.len(), 1);
    let ctx = &res.ready[0].params.to_value()["context"];
    assert_eq!(ctx["xs"], json!([1, 2, 3]));
    assert_eq!(ctx["first"], json!(1));
    assert_eq!(ctx["text"], json!("got [1,2,3]"));
}

#[test]
fn a_plan_from_the_spec_text_keeps_parameters_as_text_and_substitutes_the_same() {
    let text = serde_json::to_string(&spec(CHAIN)).expect("json");
    let (mut plan, res) = Plan::new(PlanSpec::read(&text).expect("reads"), &[], &[]).expect("plan");
    assert_eq!(
        res.ready[0].params.to_value(),
        json!({"code": "result = [1, 2, 3]"})
    );
    assert_eq!(
        plan.reads[plan.ids.get("b").expect("b")].as_ref(),
        [plan.ids.get("a").expect("a") as u32]
    );
    let res = plan.finish(&[done("a", json!({"result": [1, 2, 3]}))]);
    assert_eq!(res.ready[0].params.to_value()["context"]["first"], json!(1));
    // `a`'s one reader was released: its result is no longer kept.
    assert!(!plan.results.contains_key(&plan.ids.get("a").expect("a")));
}

#[test]
fn a_result_is_kept_only_while_a_task_still_has_to_read_it() {
    const READS: &str = r#"
name: reads
tasks:
  - id: a
    method: python/execute
    parameters: { code: "result = 1" }
  - id: b
    method: python/execute
    parameters: { code: "result = 2", context: { x: "${a.result}" } }
  - id: c
    method: python/execute
    parameters: { code: "result = 3", context: { x: "${a.result}", y: "${b.result}" } }
  - id: d
    method: python/execute
    dependencies: [c]
    parameters: { code: "result = 4" }
"#;
    let (mut plan, _) = Plan::build(spec(READS), &[], &[]).expect("plan");
    let at = |plan: &Plan, id: &str| plan.results.get(&plan.ids.get(id).expect("id")).cloned();
    plan.finish(&[done("a", json!({"result": 1}))]);
    assert!(at(&plan, "a").is_some(), "c has yet to read a");
    let res = plan.finish(&[done("b", json!({"result": 2}))]);
    assert_eq!(
        res.ready[0].params.to_value()["context"],
        json!({ "x": 1, "y": 2 })
    );
    assert!(
        at(&plan, "a").is_none() && at(&plan, "b").is_none(),
        "every reader is out"
    );
    plan.finish(&[done("c", json!({"result": 3}))]);
    assert!(
        at(&plan, "c").is_none(),
        "d depends on c but reads nothing of it"
    );
    // A skipped reader lets go too.
    let (mut plan, _) = Plan::build(spec(READS), &[], &[]).expect("plan");
    plan.finish(&[done("a", json!({"result": 1}))]);
    plan.finish(&[failed("b", "GZ2001")]);
    assert!(
        at(&plan, "a").is_none(),
        "c was skipped: nobody reads a any more"
    );
}

#[test]
fn a_failure_skips_every_dependent() {
    let (mut plan, _) = Plan::build(spec(CHAIN), &[], &[]).expect("plan");
    let res = plan.finish(&[FinishedTask {
        task_id: "a".into(),
        status: "failed".into(),
        result: None,
    }]);
    let skipped: Vec<&str> = res.skipped.iter().map(|s| s.task_id.as_str()).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(res.skipped.iter().all(|s| s.error.code == "GZ3004"));
}

#[test]
fn a_missing_path_fails_the_task_with_gz3013() {
    let (mut plan, _) = Plan::build(spec(CHAIN), &[], &[]).expect("plan");
    let res = plan.finish(&[done("a", json!({"result": []}))]);
    assert_eq!(res.failed.len(), 1);
    assert_eq!(res.failed[0].error.code, "GZ3013");
    assert!(
        res.failed[0].error.message.contains("a.result"),
        "{}",
        res.failed[0].error.message
    );
    assert_eq!(res.skipped.len(), 1);
}

const BATCH: &str = r#"
name: batch
batch: { directory: data }
template:
  id: count
  method: python/execute
  parameters: { code: "result = 1" }
tasks:
  - id: all
    method: python/execute
    tolerate_failures: true
    parameters: { code: "result = 1", context: { outcomes: "${count.results}" } }
  - id: strict
    method: python/execute
    dependencies: [count]
    parameters: { code: "result = 1" }
"#;

fn batch_plan() -> WorkflowSpec {
    let mut spec = spec(BATCH);
    let files: Vec<std::path::PathBuf> = ["a.txt", "b.txt", "c.txt"]
        .iter()
        .map(|f| std::path::Path::new("/d").join(f))
        .collect();
    batch::expand(&mut spec, "count", &files, std::path::Path::new("/d"));
    spec
}

fn failed(id: &str, code: &str) -> FinishedTask {
    FinishedTask {
        task_id: id.into(),
        status: "failed".into(),
        result: JsonText::of(&json!({"error": {"code": code, "message": "bad file"}})).ok(),
    }
}

#[test]
fn a_tolerant_task_runs_after_failures_with_every_outcome_in_file_order() {
    let (mut plan, res) = Plan::build(batch_plan(), &[], &[]).expect("plan");
    assert_eq!(res.ready.len(), 3);
    let res = plan.finish(&[
        done("count-00003", json!({"result": 3})),
        failed("count-00002", "GZ2025"),
    ]);
    assert!(res.ready.is_empty(), "one file is still running");
    assert_eq!(
        res.skipped
            .iter()
            .map(|s| s.task_id.as_str())
            .collect::<Vec<_>>(),
        ["strict"],
        "a task without tolerate_failures is skipped as before"
    );
    let res = plan.finish(&[done("count-00001", json!({"result": 1}))]);
    assert_eq!(res.ready.len(), 1);
    assert_eq!(res.ready[0].task_id, "all");
    let outcomes = &res.ready[0].params.to_value()["context"]["outcomes"];
    assert_eq!(
        outcomes,
        &json!([
            {"file": "a.txt", "task_id": "count-00001", "status": "completed", "result": 1},
            {"file": "b.txt", "task_id": "count-00002", "status": "failed",
             "error": {"code": "GZ2025", "message": "bad file"}},
            {"file": "c.txt", "task_id": "count-00003", "status": "completed", "result": 3},
        ])
    );
}

#[test]
fn a_rebuilt_plan_releases_the_tolerant_task_once() {
    let finished = [
        failed("count-00001", "GZ2025"),
        FinishedTask {
            task_id: "strict".into(),
            status: "skipped".into(),
            result: None,
        },
        done("count-00002", json!({"result": 2})),
    ];
    let (mut plan, res) = Plan::build(batch_plan(), &finished, &[]).expect("plan");
    assert_eq!(
        res.ready
            .iter()
            .map(|r| r.task_id.as_str())
            .collect::<Vec<_>>(),
        ["count-00003"]
    );
    let res = plan.finish(&[done("count-00003", json!({"result": 3}))]);
    assert_eq!(res.ready.len(), 1);
    assert_eq!(
        res.ready[0].params.to_value()["context"]["outcomes"][0]["status"],
        "failed"
    );
    let again = plan.finish(&[done("count-00003", json!({"result": 3}))]);
    assert!(again.ready.is_empty());
}

#[test]
fn rebuilding_from_finished_tasks_resumes_where_it_was() {
    let finished = [done("a", json!({"result": [1, 2, 3]}))];
    let (_, res) = Plan::build(spec(CHAIN), &finished, &[]).expect("plan");
    assert_eq!(
        res.ready
            .iter()
            .map(|r| r.task_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    let (_, res) = Plan::build(spec(CHAIN), &finished, &["b".to_string()]).expect("plan");
    assert!(res.ready.is_empty());
}

const FAN: &str = r#"
name: fan
tasks:
  - id: list
    method: python/execute
    parameters: { code: "result = 1" }
  - id: each
    method: python/execute
    batch: { from: "${list.result}", max_items: 3 }
    parameters:
      code: "result = 1"
      context: { item: "${item}", index: "${item_index}", name: "${item.name}", text: "item ${item_index}: ${item.name}" }
  - id: after
    method: python/execute
    parameters: { code: "result = 1", context: { all: "${each.result}", n: "${each.completed}" } }
  - id: report
    method: python/execute
    tolerate_failures: true
    dependencies: [each]
    parameters: { code: "result = 1", context: { outcomes: "${each.results}" } }
"#;

fn ids(res: &Resolution) -> Vec<String> {
    res.expanded
        .iter()
        .flat_map(|e| e.members.iter().map(|m| m.task_id.clone()))
        .collect()
}

#[test]
fn a_fan_out_makes_a_task_per_item_and_joins_their_results_in_item_order() {
    let (mut plan, _) = Plan::build(spec(FAN), &[], &[]).expect("plan");
    let items = json!({"result": [{"name": "a"}, {"name": "${list.result}"}]});
    let res = plan.finish(&[done("list", items)]);
    assert!(
        res.ready.is_empty(),
        "the template never runs: {:?}",
        res.ready
    );
    assert_eq!(ids(&res), ["each-00001", "each-00002"]);
    let second = &res.expanded[0].members[1];
    let ctx = &second.params.as_ref().expect("substituted").to_value()["context"].clone();
    assert_eq!(ctx["item"], json!({"name": "${list.result}"}));
    assert_eq!(ctx["index"], json!(1));
    assert_eq!(
        ctx["text"],
        json!("item 1: ${list.result}"),
        "text inside an item is never read as a reference"
    );
    assert_eq!(second.name, "each [1]");

    let res = plan.finish(&[done("each-00002", json!({"result": "B", "output": ""}))]);
    assert!(res.joined.is_empty() && res.ready.is_empty());
    let res = plan.finish(&[done("each-00001", json!({"result": "A"}))]);
    assert_eq!(res.joined.len(), 1);
    assert_eq!(res.joined[0].result.to_value()["result"], json!(["A", "B"]));
    let mut ready: Vec<&str> = res.ready.iter().map(|r| r.task_id.as_str()).collect();
    ready.sort_unstable();
    assert_eq!(ready, ["after", "report"]);
    let after = res
        .ready
        .iter()
        .find(|r| r.task_id == "after")
        .expect("after");
    assert_eq!(after.params.to_value()["context"]["all"], json!(["A", "B"]));
    assert_eq!(after.params.to_value()["context"]["n"], json!(2));
    // The members' results moved into the joined value: the plan keeps no copy of them,
    // and their names are not keys (nothing can refer to a member by name).
    for id in ["each-00001", "each-00002"] {
        let m = plan.ids.get(id).expect("member");
        assert!(
            !plan.results.contains_key(&m) && !plan.failures.contains_key(&m),
            "{id}"
        );
    }
    assert!(!plan.by_name.contains_key("each [1]"));
}

#[test]
fn a_failed_item_fails_the_template_and_a_tolerant_task_still_gets_every_outcome() {
    let (mut plan, _) = Plan::build(spec(FAN), &[], &[]).expect("plan");
    plan.finish(&[done(
        "list",
        json!({"result": [{"name": "a"}, {"name": "b"}]}),
    )]);
    let res = plan.finish(&[
        failed("each-00001", "GZ2002"),
        done("each-00002", json!({"result": "B"})),
    ]);
    assert!(res.joined.is_empty());
    assert_eq!(res.failed.len(), 1);
    assert_eq!(res.failed[0].task_id, "each");
    assert_eq!(res.failed[0].error.code, "GZ2001");
    assert_eq!(
        res.skipped
            .iter()
            .map(|s| s.task_id.as_str())
            .collect::<Vec<_>>(),
        ["after"]
    );
    assert_eq!(res.ready.len(), 1);
    let outcomes = &res.ready[0].params.to_value()["context"]["outcomes"];
    assert_eq!(outcomes[0]["status"], "failed");
    assert_eq!(outcomes[0]["error"]["code"], "GZ2002");
    assert_eq!(outcomes[1]["result"], "B");
}

#[test]
fn an_item_the_parameters_cannot_use_fails_that_task_alone() {
    let (mut plan, _) = Plan::build(spec(FAN), &[], &[]).expect("plan");
    let res = plan.finish(&[done(
        "list",
        json!({"result": [{"name": "a"}, {"other": 1}]}),
    )]);
    let members = &res.expanded[0].members;
    assert!(members[0].params.is_some());
    assert_eq!(
        members[1].error.as_ref().map(|e| e.code.as_str()),
        Some("GZ3013")
    );
    let res = plan.finish(&[done("each-00001", json!({"result": "A"}))]);
    assert_eq!(
        res.failed.len(),
        1,
        "the template fails: one item did not complete"
    );
}

#[test]
fn an_empty_list_joins_at_once_and_a_bad_list_fails_the_template() {
    let (mut plan, _) = Plan::build(spec(FAN), &[], &[]).expect("plan");
    let res = plan.finish(&[done("list", json!({"result": []}))]);
    assert_eq!(res.expanded[0].members.len(), 0);
    assert_eq!(res.joined[0].result.to_value()["result"], json!([]));
    assert_eq!(res.ready.len(), 2);

    for (value, code) in [
        (json!({"result": {"a": 1}}), "GZ3013"),
        (json!({"result": [1, 2, 3, 4]}), "GZ7012"),
        (json!({"other": 1}), "GZ3013"),
    ] {
        let (mut plan, _) = Plan::build(spec(FAN), &[], &[]).expect("plan");
        let res = plan.finish(&[done("list", value.clone())]);
        assert!(res.expanded.is_empty(), "{value}");
        assert_eq!(res.failed[0].task_id, "each");
        assert_eq!(res.failed[0].error.code, code, "{value}");
    }
}

#[test]
fn a_rebuilt_plan_derives_the_same_items_and_replays_their_outcomes() {
    let items = json!({"result": [{"name": "a"}, {"name": "b"}, {"name": "c"}]});
    // The members' records come before the list's here: replay must not depend on order.
    let finished = [
        done("each-00003", json!({"result": "C"})),
        done("list", items),
        failed("each-00001", "GZ2002"),
    ];
    let (mut plan, res) =
        Plan::build(spec(FAN), &finished, &["each-00002".to_string()]).expect("plan");
    assert_eq!(ids(&res), ["each-00001", "each-00002", "each-00003"]);
    assert!(res.joined.is_empty() && res.ready.is_empty());
    let res = plan.finish(&[done("each-00002", json!({"result": "B"}))]);
    assert_eq!(res.failed[0].task_id, "each");
    assert_eq!(res.ready[0].task_id, "report");
    assert_eq!(
        res.ready[0].params.to_value()["context"]["outcomes"][2]["result"],
        "C"
    );
}

#[test]
fn a_template_the_queue_manager_failed_stays_failed_in_a_rebuilt_plan() {
    let refused = FinishedTask {
        task_id: "each".into(),
        status: "failed".into(),
        result: JsonText::of(&json!({"error": {"code": "GZ7012", "message": "too many tasks"}}))
            .ok(),
    };
    let items = json!({"result": [{"name": "a"}, {"name": "b"}]});
    let finished = [done("list", items), refused];
    let (_, res) = Plan::build(spec(FAN), &finished, &[]).expect("plan");
    assert_eq!(
        res.skipped
            .iter()
            .map(|s| s.task_id.as_str())
            .collect::<Vec<_>>(),
        ["after"]
    );
    // Its items never existed: a tolerant task cannot read their outcomes.
    assert!(res.ready.is_empty());
    assert_eq!(res.failed[0].task_id, "report");
    assert_eq!(res.failed[0].error.code, "GZ3013");
}
