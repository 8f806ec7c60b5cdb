//! `${task.path}` and `{{Task Name.result}}` substitution, type-preserving where it can be.

use std::collections::HashMap;

use gleitzeit_workflow::{
    codes, needs_substitution, references, substitute, PathSeg, SubstitutionError,
};
use serde_json::{json, Value};

/// Results by task id and by name, as the dependency resolver would keep them.
fn results() -> HashMap<String, Value> {
    let mut results = HashMap::new();
    results.insert(
        "numbers".to_string(),
        json!({
            "result": {"n": 3, "items": [10, 20, {"deep": "yes"}], "ratio": 0.5, "ok": true},
            "output": "printed\n",
            "success": true,
            "execution_time": 0.01,
        }),
    );
    results.insert(
        "ask".to_string(),
        json!({"response": "Paris", "content": "Paris", "model": "llama3.2", "tokens_used": 7}),
    );
    let by_name = results["numbers"].clone();
    results.insert("Extract Numbers".to_string(), by_name);
    results
}

fn run(params: Value) -> Result<Value, SubstitutionError> {
    let results = results();
    substitute(&params, &|task| results.get(task))
}

#[test]
fn a_whole_string_reference_keeps_the_json_type() {
    let out = run(json!({
        "n": "${numbers.result.n}",
        "ratio": "${numbers.result.ratio}",
        "ok": "${numbers.result.ok}",
        "items": "${numbers.result.items}",
        "all": "${numbers.result}",
        "short": "${numbers}",
    }))
    .expect("resolves");
    assert_eq!(out["n"], json!(3));
    assert_eq!(out["ratio"], json!(0.5));
    assert_eq!(out["ok"], json!(true));
    assert_eq!(out["items"], json!([10, 20, {"deep": "yes"}]));
    assert_eq!(out["all"]["n"], json!(3));
    assert_eq!(out["short"], out["all"]);
}

#[test]
fn embedded_references_are_rendered_as_text() {
    let out = run(json!({
        "text": "n=${numbers.result.n}, items=${numbers.result.items}, said ${ask.response}!",
        "object": "obj: ${numbers.result.items[2]}",
    }))
    .expect("resolves");
    assert_eq!(
        out["text"],
        json!("n=3, items=[10,20,{\"deep\":\"yes\"}], said Paris!")
    );
    assert_eq!(out["object"], json!("obj: {\"deep\":\"yes\"}"));
}

#[test]
fn list_indexes_work_with_dots_and_brackets() {
    let out = run(json!({
        "dot": "${numbers.result.items.1}",
        "bracket": "${numbers.result.items[1]}",
        "mixed": "${numbers.result.items[2].deep}",
        "dotted_deep": "${numbers.result.items.2.deep}",
    }))
    .expect("resolves");
    assert_eq!(out["dot"], json!(20));
    assert_eq!(out["bracket"], json!(20));
    assert_eq!(out["mixed"], json!("yes"));
    assert_eq!(out["dotted_deep"], json!("yes"));
}

#[test]
fn substitution_is_recursive_through_objects_and_lists() {
    let out = run(json!({
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital? ${ask.response}"},
        ],
        "context": {"numbers": ["${numbers.result.n}", {"deeper": "${ask.tokens_used}"}]},
        "count": 1,
    }))
    .expect("resolves");
    assert_eq!(out["messages"][1]["content"], json!("Capital? Paris"));
    assert_eq!(out["context"]["numbers"], json!([3, {"deeper": 7}]));
    assert_eq!(out["count"], json!(1));
    assert_eq!(out["model"], json!("llama3.2"));
}

#[test]
fn the_old_braces_dialect_names_tasks() {
    let out = run(json!({
        "prompt": "Analyze: {{Extract Numbers.result}}",
        "whole": "{{Extract Numbers.result}}",
        "llm": "{{ask.result}}",
        "python_format": "f'{{x}}'",
    }))
    .expect("resolves");
    let rendered = out["prompt"].as_str().expect("a string");
    let embedded = rendered.strip_prefix("Analyze: ").expect("text kept");
    let parsed: Value = serde_json::from_str(embedded).expect("rendered as JSON");
    assert_eq!(parsed, results()["numbers"]["result"]);
    assert_eq!(out["whole"]["n"], json!(3));
    assert_eq!(
        out["llm"],
        json!("Paris"),
        "`.result` of an LLM task is its response"
    );
    assert_eq!(out["python_format"], json!("f'{{x}}'"));
}

#[test]
fn unresolvable_references_are_errors_naming_the_reference() {
    let cases = [
        (json!({"p": "${ghost.result}"}), "cannot resolve ${ghost.result}: no finished task with id or name `ghost`"),
        (json!({"p": "${numbers.result.missing}"}), "cannot resolve ${numbers.result.missing}: the task's result has no field `result.missing`"),
        (json!({"p": "x ${numbers.result.items[7]}"}), "cannot resolve ${numbers.result.items[7]}: index 7 is out of range: `result.items` has 3 items"),
        (json!({"p": ["${numbers.result.n.x}"]}), "cannot resolve ${numbers.result.n.x}: `result.n` is a number, not an object or a list"),
        (json!({"p": "${ask.nope}"}), "cannot resolve ${ask.nope}: the task's result has no field `nope`"),
        (json!({"p": {"q": "${numbers.result..n}"}}), "malformed reference ${numbers.result..n}: it has an empty path segment"),
    ];
    for (params, expected) in cases {
        let err = run(params).expect_err("must fail");
        assert_eq!(err.to_string(), expected);
        assert_eq!(err.code(), codes::SUBSTITUTION_FAILED);
    }
}

#[test]
fn escaped_dollar_is_literal() {
    let out = run(json!({"code": "print('costs $${price}')"})).expect("resolves");
    assert_eq!(out["code"], json!("print('costs ${price}')"));
}

#[test]
fn parameters_without_references_come_back_unchanged() {
    let params = json!({"model": "m", "messages": [{"role": "user", "content": "plain {text}"}]});
    assert!(!needs_substitution(&params));
    let out = substitute(&params, &|_| None).expect("nothing to resolve");
    assert_eq!(out, params);
}

#[test]
fn references_are_listed_with_their_paths_and_pointers() {
    let found = references(&json!({
        "prompt": "${a.result.items[0]} and {{Task B.result}}",
        "nested": [{"x": "${c}"}],
        "bad": "${d..e}",
    }));
    let mut summary: Vec<(&str, &[PathSeg], &str, &str)> = found
        .iter()
        .map(|r| {
            (
                r.task.as_str(),
                r.path.as_slice(),
                r.raw.as_str(),
                r.pointer.as_str(),
            )
        })
        .collect();
    // Object key order depends on serde_json's features; order within a string does not.
    summary.sort_by_key(|&(_, _, _, pointer)| pointer);
    assert_eq!(
        summary,
        vec![
            ("c", &[][..], "${c}", "/nested/0/x"),
            (
                "a",
                &[
                    PathSeg::Key("result".into()),
                    PathSeg::Key("items".into()),
                    PathSeg::Index(0)
                ][..],
                "${a.result.items[0]}",
                "/prompt"
            ),
            (
                "Task B",
                &[PathSeg::Key("result".into())][..],
                "{{Task B.result}}",
                "/prompt"
            ),
        ]
    );
}

#[test]
fn lookup_may_borrow_from_a_local_map() {
    let local: HashMap<&str, Value> = HashMap::from([("t", json!({"result": [1, 2]}))]);
    let out = substitute(&json!("${t.result[1]}"), &|id| local.get(id)).expect("resolves");
    assert_eq!(out, json!(2));
}
