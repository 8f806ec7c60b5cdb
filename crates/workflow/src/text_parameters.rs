//! Reading a spec with its tasks' parameters kept as JSON text ([`parse_with_text_parameters`]).
//!
//! A holder of a big spec that reads the parameters only now and then (the
//! dependency-resolver: when a task is released) should not hold them as trees of values
//! for the whole run: for a 100,000-task workflow those trees are ~60 MB, the text ~10 MB.
//! While [`parse_with_text_parameters`] reads, [`crate::TaskSpec`]'s `parameters` field reads its
//! value as text into a list on this thread, in task order, and is left `null`; a task
//! without parameters gets `{}` there, as it would in its field. Any other reading of a
//! spec is not affected.

use std::cell::RefCell;

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::spec::WorkflowSpec;

thread_local! {
    /// The parameters read so far while a [`parse_with_text_parameters`] runs on this thread.
    static COLLECTED: RefCell<Option<Vec<Box<RawValue>>>> = const { RefCell::new(None) };
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
    /// Ends the collection however the reading ends (an error, a panic).
    struct Collecting;
    impl Drop for Collecting {
        fn drop(&mut self) {
            COLLECTED.with(|c| c.borrow_mut().take());
        }
    }
    COLLECTED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    let guard = Collecting;
    let spec: WorkflowSpec = serde_json::from_str(text)?;
    let params = COLLECTED
        .with(|c| c.borrow_mut().take())
        .unwrap_or_default();
    drop(guard);
    if params.len() != spec.tasks.len() {
        return Err(serde::de::Error::custom(format!(
            "{} tasks but {} parameter objects",
            spec.tasks.len(),
            params.len()
        )));
    }
    Ok((spec, params))
}

/// Whether a parameters text may hold a reference (`${…}`, `{{…}}`, or an escape that could
/// spell one): when not, it reads the same as `{}` for [`crate::references`].
pub fn may_refer(text: &RawValue) -> bool {
    let text = text.get();
    text.contains("${") || text.contains("{{") || text.contains("\\u")
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
}
