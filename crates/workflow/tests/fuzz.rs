//! Bounded property tests: no YAML file, JSON spec or parameter text panics the reader, the
//! validator or the substitution (a few hundred cases each, a few seconds in CI).

use std::sync::OnceLock;

use gleitzeit_workflow::{
    parse_workflow, prepare_spec, references, substitute, validate_spec, MethodCatalog,
    WorkflowSpec,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn catalog() -> &'static MethodCatalog {
    static CATALOG: OnceLock<MethodCatalog> = OnceLock::new();
    CATALOG.get_or_init(MethodCatalog::builtin)
}

/// Numbers as YAML writes them, poison included.
fn yaml_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "1e300",
            "-1e300",
            "1e19",
            ".nan",
            ".inf",
            "-.inf",
            "0",
            "-0.0",
            "0x7fffffff",
            "1_000",
            "18446744073709551616",
            "\"3\"",
            "~",
            "[]",
            "{}",
        ])
        .prop_map(str::to_string),
    ]
}

/// A workflow file built from a template whose numbers and words are arbitrary.
fn yaml_workflow() -> impl Strategy<Value = String> {
    (
        yaml_number(),
        yaml_number(),
        yaml_number(),
        yaml_number(),
        yaml_number(),
        yaml_number(),
        "[ -~]{0,20}",
    )
        .prop_map(|(wt, tt, attempts, base, max, priority, text)| {
            format!(
                "name: fuzz\ntimeout: {wt}\ntasks:\n  - id: a\n    method: python/execute\n    timeout: {tt}\n    priority: {priority}\n    retry:\n      max_attempts: {attempts}\n      base_delay: {base}\n      max_delay: {max}\n    params: {{ code: \"x\" }}\n  - id: b\n    method: python/execute\n    params: {{ code: \"y\", context: {{ v: \"${{a.result}} {text:?}\" }} }}\n"
            )
        })
}

/// Any JSON value, a few levels deep, with keys a spec uses.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "a",
            "b",
            "${a.result}",
            "${b.x[0]}",
            "{{a.result}}",
            "python/execute",
            "llm/chat",
            "${",
            "$${a}",
            "${a.result[99999999999999999999]}"
        ])
        .prop_map(|s| Value::String(s.to_string())),
        ".{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        let key = prop::sample::select(vec![
            "id",
            "name",
            "method",
            "params",
            "parameters",
            "dependencies",
            "timeout",
            "retry",
            "max_attempts",
            "base_delay",
            "max_delay",
            "priority",
            "code",
            "context",
            "model",
        ])
        .prop_map(str::to_string);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_text_is_read_without_panicking(text in "[ -~\n\t]{0,300}") {
        let _ = parse_workflow(&text, catalog());
    }

    #[test]
    fn poison_numbers_in_a_file_are_diagnostics(yaml in yaml_workflow()) {
        if let Ok(parsed) = parse_workflow(&yaml, catalog()) {
            // Whatever was accepted is within range and converts without panicking.
            prop_assert!(gleitzeit_workflow::first_range_issue(&parsed.spec).is_none());
            let _ = parsed.spec.timeout_duration();
            for t in &parsed.spec.tasks {
                let _ = t.timeout_millis();
                let _ = t.retry.delay_for_attempt(u32::MAX, 0.5);
            }
        }
    }

    #[test]
    fn any_json_spec_is_validated_without_panicking(tasks in prop::collection::vec(json_value(), 0..6), timeout in json_value()) {
        let value = json!({ "name": "fuzz", "timeout": timeout, "tasks": tasks });
        if let Ok(spec) = serde_json::from_value::<WorkflowSpec>(value) {
            let _ = validate_spec(&spec, catalog());
            if let Ok(parsed) = prepare_spec(spec, catalog()) {
                prop_assert!(gleitzeit_workflow::first_range_issue(&parsed.spec).is_none());
            }
        }
    }

    #[test]
    fn substitution_never_panics(params in json_value(), result in json_value(), text in ".{0,40}") {
        let lookup_result = json!({ "result": result });
        let lookup = |id: &str| (id == "a" || id == "b").then_some(&lookup_result);
        let _ = references(&params);
        let _ = substitute(&params, &lookup);
        let text = Value::String(format!("${{{text}}} {{{{{text}}}}} ${{a.{text}}}"));
        let _ = references(&text);
        let _ = substitute(&text, &lookup);
    }
}
