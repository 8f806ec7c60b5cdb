//! Bounded property tests: no input on the wire panics the envelope and payload parsers or
//! the limit helpers (a few hundred cases each, well under a second in CI).

use std::time::Duration;

use gleitzeit_protocol::limits::{
    cap_outcome, duration_from_secs, json_preview, json_size_within, MAX_TIMEOUT, TRUNCATION_MARKER,
};
use gleitzeit_protocol::payloads::{
    CancelTasks, ExecuteTasks, HeldTasks, LeaseTasks, LeasedTasks, Resolution, SubmitWorkflow,
    TaskOutcome, TaskOutcomes, TasksFinished, WorkflowPlan,
};
use gleitzeit_protocol::{Envelope, RawEnvelope, Target};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names the payloads use, and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "workflow_id",
            "task_id",
            "attempt",
            "tasks",
            "outcomes",
            "result",
            "error",
            "timeout_ms",
            "slots",
            "wait_ms",
            "spec",
            "finished",
            "started",
            "params",
            "code",
            "message",
            "status",
            "ready",
            "skipped",
            "failed",
            "v",
            "id",
            "target",
            "event",
            "payload",
            "ts",
            "source",
        ])
        .prop_map(str::to_string),
        "[a-z_]{1,8}",
    ]
}

fn parse_every_payload(payload: Value) {
    let env = Envelope::new(Target::Hub, "anything", payload);
    let _ = env.payload_as::<ExecuteTasks>();
    let _ = env.payload_as::<TaskOutcomes>();
    let _ = env.payload_as::<HeldTasks>();
    let _ = env.payload_as::<CancelTasks>();
    let _ = env.payload_as::<LeaseTasks>();
    let _ = env.payload_as::<LeasedTasks>();
    let _ = env.payload_as::<SubmitWorkflow>();
    let _ = env.payload_as::<WorkflowPlan>();
    let _ = env.payload_as::<TasksFinished>();
    let _ = env.payload_as::<Resolution>();
    if let Ok(outcome) = env.payload_as::<TaskOutcome>() {
        let capped = cap_outcome(outcome, 64);
        assert!(capped.result.is_none() || json_size_within(&capped.result, 64).is_some());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn envelope_text_never_panics(text in ".{0,200}") {
        let _ = serde_json::from_str::<Envelope>(&text);
        let _ = serde_json::from_str::<RawEnvelope>(&text);
    }

    #[test]
    fn envelope_shaped_json_never_panics(mut fields in prop::collection::vec((key(), json_value()), 0..8)) {
        fields.push(("event".into(), json!("x")));
        let value = Value::Object(fields.into_iter().collect());
        let text = value.to_string();
        if let Ok(env) = serde_json::from_str::<RawEnvelope>(&text) {
            let _ = env.parsed();
        }
        let _ = serde_json::from_value::<Envelope>(value);
    }

    #[test]
    fn payloads_never_panic(payload in json_value()) {
        parse_every_payload(payload);
    }

    #[test]
    fn limit_helpers_never_panic(secs in any::<f64>(), value in json_value(), limit in 0usize..200) {
        if let Some(d) = duration_from_secs(secs, MAX_TIMEOUT) {
            prop_assert!(d > Duration::ZERO && d <= MAX_TIMEOUT);
        }
        let preview = json_preview(&value, limit);
        prop_assert!(preview.len() <= limit + TRUNCATION_MARKER.len());
    }
}
