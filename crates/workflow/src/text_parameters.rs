//! Reading a spec with its tasks' parameters kept as JSON text ([`parse_with_text_parameters`]).
//!
//! A holder of a big spec that checks and writes it (the queue-manager at a submission)
//! should not hold the parameters as trees of values: for a 100,000-task workflow those
//! trees are ~60 MB, the text ~10 MB.
//! While [`parse_with_text_parameters`] reads, [`crate::TaskSpec`]'s `parameters` field reads its
//! value as text into a list on this thread, in task order, and is left `null`; a task
//! without parameters gets `{}` there, as it would in its field. Any other reading of a
//! spec is not affected.
//!
//! The other way, [`write_with_text_parameters`] writes such a spec (its parameters `null`)
//! as JSON with each task's parameters text put back in its place.

use std::cell::RefCell;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::spec::WorkflowSpec;

thread_local! {
    /// The parameters read so far while a [`parse_with_text_parameters`] runs on this thread.
    static COLLECTED: RefCell<Option<Vec<Box<RawValue>>>> = const { RefCell::new(None) };
    /// While a [`write_with_text_parameters`] runs on this thread: the texts to write and
    /// how many were written.
    static WRITING: RefCell<Option<(Vec<Box<RawValue>>, usize)>> = const { RefCell::new(None) };
}

/// Reads `text` as a spec whose tasks' `parameters` are `null`, and gives those parameters
/// as JSON text, one per task in the spec's order (`{}` for a task that gave none).
///
/// # Errors
///
/// What reading the spec the usual way would report.
pub fn parse_with_text_parameters(
    text: &str,
) -> Result<(WorkflowSpec, Vec<Box<RawValue>>), serde_json::Error> {
    let (spec, params) = collected_by(|| serde_json::from_str::<WorkflowSpec>(text))?;
    if params.len() != spec.tasks.len() {
        return Err(serde::de::Error::custom(format!(
            "{} tasks but {} parameter objects",
            spec.tasks.len(),
            params.len()
        )));
    }
    Ok((spec, params))
}

/// Runs `read` with the parameters it meets collected on this thread.
fn collected_by<T>(
    read: impl FnOnce() -> Result<T, serde_json::Error>,
) -> Result<(T, Vec<Box<RawValue>>), serde_json::Error> {
    /// Ends the collection however the reading ends (an error, a panic).
    struct Collecting;
    impl Drop for Collecting {
        fn drop(&mut self) {
            COLLECTED.with(|c| c.borrow_mut().take());
        }
    }
    COLLECTED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let guard = Collecting;
    let value = read()?;
    let params = COLLECTED
        .with(|c| c.borrow_mut().take())
        .unwrap_or_default();
    drop(guard);
    Ok((value, params))
}

/// Writes `spec` (read by [`parse_with_text_parameters`], its parameters `null`) as JSON
/// text, each task's parameters taken from `params` (one per task, in order): the spec as
/// it would be written with its parameters, without building them as trees of values.
/// `params` is given back, whatever happens.
///
/// # Errors
///
/// What writing the spec reports, or a count of `params` that is not the task count.
pub fn write_with_text_parameters(
    spec: &WorkflowSpec,
    params: Vec<Box<RawValue>>,
) -> (Result<Box<RawValue>, serde_json::Error>, Vec<Box<RawValue>>) {
    /// Ends the writing however it ends (an error, a panic).
    struct Writing;
    impl Drop for Writing {
        fn drop(&mut self) {
            WRITING.with(|w| w.borrow_mut().take());
        }
    }
    let expected = params.len();
    WRITING.with(|w| *w.borrow_mut() = Some((params, 0)));
    let guard = Writing;
    let written = serde_json::value::to_raw_value(spec);
    let (params, used) = WRITING.with(|w| w.borrow_mut().take()).unwrap_or_default();
    drop(guard);
    let result = written.and_then(|text| {
        if used == expected && expected == spec.tasks.len() {
            Ok(text)
        } else {
            Err(serde::ser::Error::custom(format!(
                "{} tasks but {expected} parameter objects",
                spec.tasks.len()
            )))
        }
    });
    (result, params)
}

/// `TaskSpec::parameters` as written (see [`write_with_text_parameters`]).
pub(crate) fn write_parameters<S: Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
    WRITING.with(|w| {
        let next = w.borrow_mut().as_mut().map(|(_, used)| {
            *used += 1;
            *used - 1
        });
        let Some(k) = next else {
            return value.serialize(s);
        };
        let writing = w.borrow();
        match writing.as_ref().and_then(|(texts, _)| texts.get(k)) {
            Some(text) => text.serialize(s),
            None => Err(serde::ser::Error::custom(
                "more tasks than parameter objects",
            )),
        }
    })
}

/// Whether a parameters text may hold a reference (`${…}`, `{{…}}`, or an escape that could
/// spell one): when not, it reads the same as `{}` for [`crate::references`].
pub fn may_refer(text: &RawValue) -> bool {
    let text = text.get();
    text.contains("${") || text.contains("{{") || text.contains("\\u")
}

/// Whether `task`, whose parameters are `params` as text, is ready the moment its workflow
/// is stored: it waits for no task, does not fan out, and its parameters refer to nothing,
/// so they go out as written. A dependency-resolver's first answer for the workflow would
/// report it ready with exactly this text (`dependency-resolver`, `plan/mod.rs`).
pub fn ready_as_written(task: &crate::TaskSpec, params: &RawValue) -> bool {
    task.dependencies.is_empty() && task.batch.is_none() && !may_refer(params)
}

/// `TaskSpec::parameters` as read (see the module docs).
pub(crate) fn parameters<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    if !collecting() {
        return Value::deserialize(d);
    }
    let raw = Box::<RawValue>::deserialize(d)?;
    push(raw);
    Ok(Value::Null)
}

/// `TaskSpec::parameters` when a task gave none: `{}`.
pub(crate) fn default_parameters() -> Value {
    if collecting() {
        if let Ok(raw) = RawValue::from_string("{}".to_string()) {
            push(raw);
        }
        return Value::Null;
    }
    Value::Object(serde_json::Map::new())
}

fn collecting() -> bool {
    COLLECTED.with(|c| c.borrow().is_some())
}

fn push(raw: Box<RawValue>) {
    COLLECTED.with(|c| {
        if let Some(list) = c.borrow_mut().as_mut() {
            list.push(raw);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_task_waiting_for_nothing_and_reading_nothing_is_ready_as_written() {
        let spec = json!({
            "name": "w",
            "tasks": [
                {"id": "a", "method": "python/execute", "parameters": {"code": "result = 1"}},
                {"id": "b", "method": "python/execute"},
                {"id": "c", "method": "python/execute", "parameters": {"code": "x"}, "dependencies": ["a"]},
                {"id": "d", "method": "python/execute", "parameters": {"x": "${a.result}"}},
                {"id": "e", "method": "python/execute", "parameters": {"x": "{{a}}"}},
                {"id": "f", "method": "python/execute", "batch": {"from": "${a.result}"}}
            ]
        })
        .to_string();
        let (spec, params) = parse_with_text_parameters(&spec).expect("reads");
        let ready: Vec<bool> = spec
            .tasks
            .iter()
            .zip(&params)
            .map(|(t, p)| ready_as_written(t, p))
            .collect();
        assert_eq!(ready, [true, true, false, false, false, false]);
    }

    #[test]
    fn parameters_come_as_text_in_task_order_and_the_spec_reads_the_same_otherwise() {
        let spec = json!({
            "name": "w",
            "tasks": [
                {"id": "a", "method": "python/execute", "parameters": {"code": "result = 1"}},
                {"id": "b", "method": "python/execute"},
                {"id": "c", "method": "python/execute", "params": {"x": "${a.result}"}, "dependencies": ["a"]}
            ]
        })
        .to_string();
        let (lean, params) = parse_with_text_parameters(&spec).expect("reads");
        let texts: Vec<&str> = params.iter().map(|p| p.get()).collect();
        assert_eq!(
            texts,
            [r#"{"code":"result = 1"}"#, "{}", r#"{"x":"${a.result}"}"#]
        );
        assert!(lean.tasks.iter().all(|t| t.parameters.is_null()));
        let full: WorkflowSpec = serde_json::from_str(&spec).expect("reads");
        assert_eq!(full.tasks[1].parameters, json!({}));
        assert_eq!(full.tasks[2].parameters, json!({"x": "${a.result}"}));
        let mut forgotten = full.clone();
        forgotten.forget_parameters();
        assert_eq!(lean, forgotten);
        assert!(!may_refer(&params[0]) && !may_refer(&params[1]) && may_refer(&params[2]));
    }

    #[test]
    fn a_failed_read_leaves_later_reads_untouched() {
        assert!(parse_with_text_parameters(
            r#"{"name": "w", "tasks": [{"id": "a", "parameters": {}}, {"id": 3}]}"#
        )
        .is_err());
        let full: WorkflowSpec =
            serde_json::from_str(r#"{"name": "w", "tasks": [{"id": "a", "method": "m"}]}"#)
                .expect("reads");
        assert_eq!(full.tasks[0].parameters, json!({}));
    }

    fn prepared_both_ways(
        spec: &str,
    ) -> (
        Result<crate::Parsed, Vec<String>>,
        Result<crate::Parsed, Vec<String>>,
    ) {
        let catalog = crate::MethodCatalog::builtin();
        let words = |d: Vec<crate::Diagnostic>| d.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        let full: WorkflowSpec = serde_json::from_str(spec).expect("reads");
        let usual = crate::prepare_spec(full, &catalog).map_err(words);
        let (lean, params) = parse_with_text_parameters(spec).expect("reads");
        let text = crate::prepare_spec_with_text_parameters(lean, &params, &catalog).map_err(words);
        (usual, text)
    }

    #[test]
    fn a_spec_prepared_with_text_parameters_is_checked_and_written_as_the_usual_way() {
        let spec = json!({
            "name": "w",
            "tasks": [
                {"id": "a", "method": "python/execute", "parameters": {"code": "result = 1"}},
                {"id": "b", "name": "B", "method": "python/execute", "parameters": {"code": "x", "context": {"v": "${a.result}"}}},
                {"id": "c", "method": "python/execute", "params": {"code": "y", "context": {"w": "${B.result[0]}"}}}
            ]
        })
        .to_string();
        let (usual, text) = prepared_both_ways(&spec);
        let (usual, text) = (usual.expect("valid"), text.expect("valid"));
        assert_eq!(
            text.spec.tasks[2].dependencies,
            ["b"],
            "dependencies come from the text"
        );
        assert_eq!(text.warnings, usual.warnings);
        let mut forgotten = usual.spec.clone();
        forgotten.forget_parameters();
        assert_eq!(text.spec, forgotten);
        let (_, params) = parse_with_text_parameters(&spec).expect("reads");
        let (written, back) = write_with_text_parameters(&text.spec, params);
        assert_eq!(back.len(), 3, "the texts are given back");
        let written: Value = serde_json::from_str(written.expect("written").get()).expect("json");
        assert_eq!(written, serde_json::to_value(&usual.spec).expect("json"));
        // Written the usual way afterwards: parameters as the spec holds them.
        assert_eq!(
            serde_json::to_value(&text.spec).expect("json")["tasks"][0]["parameters"],
            Value::Null
        );
    }

    #[test]
    fn faults_in_text_parameters_are_found_as_in_parsed_ones() {
        for tasks in [
            json!([{"id": "a", "method": "python/execute", "parameters": {"code": "x", "context": {"v": "${nobody.result}"}}}]),
            json!([{"id": "a", "method": "python/execute", "parameters": [1, 2]}]),
            json!([{"id": "a", "method": "llm/generate", "parameters": {}}]),
            json!([
                {"id": "a", "method": "python/execute", "parameters": {"code": "x", "context": {"v": "${b.result}"}}},
                {"id": "b", "method": "python/execute", "parameters": {"code": "x", "context": {"v": "${a.result}"}}}
            ]),
        ] {
            let spec = json!({"name": "w", "tasks": tasks}).to_string();
            let (usual, text) = prepared_both_ways(&spec);
            let usual = usual.expect_err("invalid");
            assert!(!usual.is_empty());
            assert_eq!(text.expect_err("invalid"), usual, "{spec}");
        }
    }

    #[test]
    fn a_count_that_does_not_match_is_an_error_not_a_wrong_spec() {
        let spec = json!({"name": "w", "tasks": [{"id": "a", "method": "python/execute", "parameters": {"code": "x"}}]}).to_string();
        let (lean, mut params) = parse_with_text_parameters(&spec).expect("reads");
        params.push(RawValue::from_string("{}".into()).expect("json"));
        let (written, back) = write_with_text_parameters(&lean, params);
        assert!(written.is_err());
        assert_eq!(back.len(), 2);
        let (written, _) = write_with_text_parameters(&lean, Vec::new());
        assert!(written.is_err());
        assert!(crate::prepare_spec_with_text_parameters(
            lean,
            &[],
            &crate::MethodCatalog::builtin()
        )
        .is_err());
    }
}
