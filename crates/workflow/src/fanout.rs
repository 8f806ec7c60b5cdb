//! Fan-out over a list that an earlier task returns: one task per item, made at run time.
//!
//! A task with `batch: {from: "${list.result.items}", max_items: 500, fail_fast: false}` is
//! a *template*. When `from` can be resolved (the task it names completed), the
//! dependency-resolver reads the list and makes one *member* task per item, ids
//! `<template>-00001`… ([`member_id`]), each with the template's method, retry, timeout and
//! priority, and its parameters substituted once with `${item}` (the item, walked as plain
//! JSON: `${item.name}`, `${item[0]}`) and `${item_index}` (its position, from 0). The
//! queue-manager stores the members with the workflow in one transaction and runs them like
//! any other task.
//!
//! The template itself never runs: it *joins* its members. Once every member has ended it
//! completes with [`joined`]'s value when all of them completed, or fails (GZ2001) when some
//! did not; its dependents then run (or are skipped, unless they have `tolerate_failures`).
//! So `${template.result}` is the list of the members' results in item order,
//! `${template.results}` every member's outcome (`{item_index, task_id, status, result |
//! error}`), and `${template.completed}` / `${template.failed}` the counts, also for a
//! tolerant task after failures. An empty list completes the template at once with `[]`.
//!
//! Everything here is pure: the members of a template follow from the spec and the list
//! alone, so a restarted resolver or another queue-manager derives the same tasks.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::spec::WorkflowSpec;
use crate::substitute::{references, ITEM, ITEM_INDEX};

/// Most items one fan-out may have (each is a task).
pub const MAX_ITEMS: u64 = 100_000;
/// `max_items` when the workflow does not say.
pub const DEFAULT_MAX_ITEMS: u64 = 10_000;

/// A task's `batch:` block: fan out over the list `from` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FanOut {
    /// One `${task.path}` reference to a list in an earlier task's result.
    pub from: String,
    /// At most this many items; a longer list fails the template (GZ7012), never a silent cut.
    #[serde(default = "default_max_items")]
    pub max_items: u64,
    /// The first member that fails for good stops the workflow (default: the others go on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fail_fast: bool,
}

fn default_max_items() -> u64 {
    DEFAULT_MAX_ITEMS
}

impl FanOut {
    /// The settings of a task's `batch:` block: `from` (required, exactly one `${…}`
    /// reference), `max_items` (1 to [`MAX_ITEMS`]), `fail_fast`. The error names the
    /// offending key.
    pub fn from_json(v: &Value) -> Result<FanOut, String> {
        let map = v.as_object().ok_or(
            "a task's `batch` must be a mapping with `from`, e.g. { from: \"${list.result}\" }",
        )?;
        for key in map.keys() {
            if !["from", "max_items", "fail_fast"].contains(&key.as_str()) {
                return Err(format!(
                    "unknown key `{key}` in a task's `batch` (from, max_items, fail_fast)"
                ));
            }
        }
        let from =
            match map.get("from") {
                Some(Value::String(f)) => f.clone(),
                _ => return Err(
                    "a task's `batch` needs `from`: a reference to a list, e.g. \"${list.result}\""
                        .into(),
                ),
            };
        let refs = references(&Value::String(from.clone()));
        let whole = refs.len() == 1 && refs[0].raw == from.trim();
        if !whole {
            return Err(format!(
                "`batch.from` must be exactly one reference such as \"${{list.result}}\", not `{from}`"
            ));
        }
        if refs[0].task == ITEM || refs[0].task == ITEM_INDEX {
            return Err(format!(
                "`batch.from` names `{}`, the item of the fan-out itself",
                refs[0].task
            ));
        }
        let max_items = match map.get("max_items") {
            None | Some(Value::Null) => DEFAULT_MAX_ITEMS,
            Some(n) => match n.as_u64() {
                Some(n) if (1..=MAX_ITEMS).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "`batch.max_items` must be 1 to {MAX_ITEMS}, not {n}"
                    ))
                }
            },
        };
        let fail_fast = match map.get("fail_fast") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`batch.fail_fast` must be true or false".into()),
        };
        Ok(FanOut {
            from: from.trim().to_string(),
            max_items,
            fail_fast,
        })
    }

    /// The task `from` names (id or name, as written).
    pub fn source(&self) -> Option<String> {
        references(&Value::String(self.from.clone()))
            .into_iter()
            .next()
            .map(|r| r.task)
    }
}

/// The id of a template's `n`-th (1-based) member: `<template>-00001`… (at least five
/// digits, more when the list is longer).
pub fn member_id(template: &str, n: usize, count: usize) -> String {
    crate::batch::member_id(template, n, count)
}

/// Whether `id` has the shape of a member id of `template` (`<template>-<digits>`).
pub fn is_member_id(template: &str, id: &str) -> bool {
    id.strip_prefix(template)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

/// The fan-out templates of a spec by id, to find which template made a task that is not
/// in the spec (one lookup per task, however many templates and tasks there are).
#[derive(Debug, Default)]
pub struct Templates<'s> {
    by_id: std::collections::HashMap<&'s str, usize>,
}

impl<'s> Templates<'s> {
    /// The templates of `spec`.
    pub fn of(spec: &'s WorkflowSpec) -> Self {
        Templates {
            by_id: spec
                .tasks
                .iter()
                .enumerate()
                .filter(|(_, t)| t.batch.is_some())
                .map(|(i, t)| (t.id.as_str(), i))
                .collect(),
        }
    }

    /// The template (its position in `spec.tasks`) that task `id` is a member of, if any.
    pub fn template_of(&self, id: &str) -> Option<usize> {
        let (template, _) = id.rsplit_once('-')?;
        let &at = self.by_id.get(template)?;
        is_member_id(template, id).then_some(at)
    }
}

/// What a fan-out turns a resolved `from` value into: the items, or why it cannot.
pub fn items<'v>(value: &'v Value, fan: &FanOut) -> Result<&'v [Value], String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "`batch.from` {} is {}, not a list",
            fan.from,
            crate::substitute::json_kind(value)
        ));
    };
    if items.len() as u64 > fan.max_items {
        return Err(format!(
            "`batch.from` {} has {} items, more than max_items {}",
            fan.from,
            items.len(),
            fan.max_items
        ));
    }
    Ok(items)
}

/// How one member ended, for [`joined`].
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOutcome {
    /// Completed with this result object.
    Completed(Value),
    /// Did not complete: its status (`failed`, `skipped`) and error.
    Ended(String, Value),
}

/// The joined value of a template whose members (in item order, with their ids) ended:
/// `{"result": [primary value or null per item], "results": [{item_index, task_id, status,
/// result | error}], "completed": k, "failed": m}`. `${template.result}` is then the list of
/// results (the `result` rule picks the `result` field).
pub fn joined<'a>(members: impl Iterator<Item = (&'a str, &'a MemberOutcome)>) -> Value {
    let mut values = Vec::new();
    let mut outcomes = Vec::new();
    let mut completed = 0usize;
    for (index, (task_id, outcome)) in members.enumerate() {
        let mut entry = Map::new();
        entry.insert("item_index".into(), json!(index));
        entry.insert("task_id".into(), json!(task_id));
        match outcome {
            MemberOutcome::Completed(result) => {
                completed += 1;
                let primary = crate::substitute::resolve_path(result, &[])
                    .cloned()
                    .unwrap_or_else(|_| result.clone());
                entry.insert("status".into(), json!("completed"));
                entry.insert("result".into(), primary.clone());
                values.push(primary);
            }
            MemberOutcome::Ended(status, error) => {
                entry.insert("status".into(), json!(status));
                entry.insert("error".into(), error.clone());
                values.push(Value::Null);
            }
        }
        outcomes.push(Value::Object(entry));
    }
    let failed = outcomes.len() - completed;
    json!({
        "result": values,
        "results": outcomes,
        "completed": completed,
        "failed": failed,
    })
}

/// The name of a template's `n`-th (1-based) member: the template's name and the item's
/// index, `<name> [0]`….
pub fn member_name(template_name: &str, n: usize) -> String {
    format!("{template_name} [{}]", n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_must_be_one_reference() {
        let ok = FanOut::from_json(&json!({"from": "${list.result.items}"})).expect("valid");
        assert_eq!(ok.max_items, DEFAULT_MAX_ITEMS);
        assert_eq!(ok.source().as_deref(), Some("list"));
        for bad in [
            json!({"from": "items: ${list.result}"}),
            json!({"from": "${a.result}${b.result}"}),
            json!({"from": 3}),
            json!({}),
            json!({"from": "${item}"}),
            json!({"from": "${a.result}", "max_items": 0}),
            json!({"from": "${a.result}", "max_items": 100_001}),
            json!({"from": "${a.result}", "fail_fast": "yes"}),
            json!({"from": "${a.result}", "directory": "x"}),
            json!("${a.result}"),
        ] {
            assert!(FanOut::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn member_ids_are_recognised_and_lists_are_checked() {
        assert!(is_member_id("t", "t-00001"));
        assert!(is_member_id("a-b", "a-b-123456"));
        assert!(!is_member_id("t", "t-"));
        assert!(!is_member_id("t", "t-1x"));
        assert!(!is_member_id("t", "tt-00001"));
        let fan = FanOut::from_json(&json!({"from": "${a.result}", "max_items": 2})).expect("ok");
        assert!(items(&json!([1, 2]), &fan).is_ok());
        assert!(items(&json!([1, 2, 3]), &fan)
            .expect_err("too many")
            .contains("max_items 2"));
        assert!(items(&json!({"a": 1}), &fan)
            .expect_err("object")
            .contains("not a list"));
    }

    #[test]
    fn the_join_lists_results_in_item_order() {
        let a = MemberOutcome::Completed(json!({"result": 1, "output": ""}));
        let b = MemberOutcome::Ended("failed".into(), json!({"code": "GZ2002"}));
        let c = MemberOutcome::Completed(json!({"response": "hi"}));
        let v = joined([("t-1", &a), ("t-2", &b), ("t-3", &c)].into_iter());
        assert_eq!(v["result"], json!([1, null, "hi"]));
        assert_eq!(v["completed"], 2);
        assert_eq!(v["failed"], 1);
        assert_eq!(v["results"][1]["error"]["code"], "GZ2002");
        assert_eq!(v["results"][2]["item_index"], 2);
    }

    fn parse(yaml: &str) -> Result<crate::validate::Parsed, Vec<crate::Diagnostic>> {
        crate::parse_workflow(yaml, &crate::MethodCatalog::builtin())
    }

    const FAN: &str = r#"
name: fan
tasks:
  - id: list
    method: python/execute
    parameters: { code: "result = [1, 2]" }
  - id: each
    method: python/execute
    batch: { from: "${list.result}", max_items: 50, fail_fast: true }
    parameters: { code: "result = context['n'] * 2", context: { n: "${item}", i: "${item_index}" } }
  - id: total
    method: python/execute
    parameters: { code: "result = sum(context['all'])", context: { all: "${each.result}", outcomes: "${each.results}" } }
"#;

    #[test]
    fn a_fan_out_parses_and_depends_on_its_source() {
        let parsed = parse(FAN).expect("valid");
        let each = &parsed.spec.tasks[1];
        assert_eq!(each.dependencies, ["list"]);
        assert_eq!(
            each.batch,
            Some(FanOut {
                from: "${list.result}".into(),
                max_items: 50,
                fail_fast: true
            })
        );
        assert_eq!(parsed.spec.tasks[2].dependencies, ["each"]);
        assert!(
            parsed.warnings.is_empty(),
            "`${{each.results}}` is the join's: {:?}",
            parsed.warnings
        );
        // The spec round-trips through JSON (how it is stored and sent to the resolver).
        let json = serde_json::to_value(&parsed.spec).expect("json");
        let back: WorkflowSpec = serde_json::from_value(json).expect("spec");
        assert_eq!(back.tasks[1].batch, each.batch);
        let templates = Templates::of(&back);
        assert_eq!(templates.template_of("each-00002"), Some(1));
        assert_eq!(templates.template_of("list-00001"), None);
        assert_eq!(templates.template_of("each-0000x"), None);
    }

    fn first_error(yaml: &str) -> crate::Diagnostic {
        parse(yaml).expect_err("invalid").remove(0)
    }

    #[test]
    fn mistakes_in_a_fan_out_are_reported_where_they_are() {
        let unknown = first_error(&FAN.replace("${list.result}\", max", "${lst.result}\", max"));
        assert_eq!(unknown.code, "GZ3013");
        assert!(unknown.message.contains("`lst`"), "{}", unknown.message);
        assert_eq!(unknown.line, Some(9));

        let not_one =
            first_error(&FAN.replace("from: \"${list.result}\"", "from: \"all ${list.result}\""));
        assert_eq!(not_one.code, "GZ7001");
        assert_eq!(not_one.line, Some(9));

        let stray_item = first_error(&FAN.replace("all: \"${each.result}\"", "all: \"${item}\""));
        assert_eq!(stray_item.code, "GZ3013");
        assert!(
            stray_item.message.contains("does not fan out"),
            "{}",
            stray_item.message
        );

        let clash = first_error(&FAN.replace("id: total", "id: each-00001"));
        assert!(clash.message.contains("each-00001"), "{}", clash.message);
    }
}
