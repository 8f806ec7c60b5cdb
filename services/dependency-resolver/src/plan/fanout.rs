//! Fan-out templates in a plan: making the members when the template would be released,
//! and joining their results once every member has ended (`gleitzeit_workflow::fanout`).

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{Expansion, JoinedTask, MemberTask, Resolution};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_workflow::fanout::{self, MemberOutcome};
use gleitzeit_workflow::{substitute, substitute_item};
use serde_json::{json, Value};

use super::{Plan, State};

impl Plan {
    /// Template `t`'s dependencies have ended: read its list and make one member per item
    /// (reported in `res.expanded`), or fail it when the list cannot be read.
    pub(super) fn expand(&mut self, t: usize, res: &mut Resolution) {
        let Some(fan) = self.spec.tasks[t].batch.clone() else {
            return;
        };
        let lookup = |key: &str| self.result_of(key);
        let list = substitute(&Value::String(fan.from.clone()), &lookup)
            .map_err(|e| GzError::new(ErrorCode::SubstitutionFailed, e.to_string()))
            .and_then(|value| {
                fanout::items(&value, &fan)
                    .map(<[Value]>::to_vec)
                    .map_err(|reason| {
                        let code = if value.is_array() {
                            ErrorCode::TooLarge
                        } else {
                            ErrorCode::SubstitutionFailed
                        };
                        GzError::new(code, reason)
                    })
            });
        let items = match list {
            Ok(items) => items,
            Err(error) => {
                let error = GzError {
                    message: format!("task {}: {}", self.spec.tasks[t].id, error.message),
                    ..error
                }
                .with_hint("`batch.from` must name a list in an earlier task's result, with at most `max_items` items");
                self.fail(t, error, res);
                return;
            }
        };
        let parameters = match self.parameters(t) {
            Ok(p) => p,
            Err(error) => return self.fail(t, error, res),
        };
        let lookup = |key: &str| self.result_of(key);
        let template = &self.spec.tasks[t];
        let count = items.len();
        let mut expansion = Expansion {
            template: template.id.clone(),
            members: Vec::with_capacity(count),
        };
        let made: Vec<(gleitzeit_workflow::TaskSpec, Result<Value, GzError>)> = items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                let params = substitute_item(&parameters, &lookup, item, k).map_err(|e| {
                    GzError::new(
                        ErrorCode::SubstitutionFailed,
                        format!(
                            "task {}: {e}",
                            fanout::member_id(&template.id, k + 1, count)
                        ),
                    )
                });
                let spec = fanout::member(template, k + 1, count);
                (spec, params)
            })
            .collect();
        let mut positions = Vec::with_capacity(count);
        for (spec, params) in made {
            let m = self.spec.tasks.len();
            let mut member = MemberTask {
                task_id: spec.id.clone(),
                name: spec.name.clone(),
                params: None,
                error: None,
            };
            let state = match params {
                Ok(params) => {
                    member.params = Some(JsonText::of_value(&params));
                    self.failures.push(None);
                    State::Started
                }
                Err(error) => {
                    self.failures.push(Some(("failed".into(), json!(error))));
                    member.error = Some(error);
                    State::Failed
                }
            };
            // Members are not in `names`: no reference can name one (the spec that is
            // validated does not have them), and a million of them would be a million keys.
            self.index.insert(spec.id.clone(), m);
            self.state.push(state);
            self.remaining.push(0);
            self.results.push(None);
            self.template_of.insert(m, t);
            self.spec.tasks.push(spec);
            positions.push(m);
            expansion.members.push(member);
        }
        let ended = positions
            .iter()
            .filter(|&&m| self.state[m] == State::Failed)
            .count();
        self.state[t] = State::Joining;
        self.remaining[t] = (count - ended) as u32;
        self.members.insert(t, positions);
        res.expanded.push(expansion);
        if self.remaining[t] == 0 {
            self.join(t, res);
        }
    }

    /// Member `m` ended (its state and result or failure are set): the last one joins its
    /// template. False when `m` is not a member.
    pub(super) fn member_ended(&mut self, m: usize, res: &mut Resolution) -> bool {
        let Some(&t) = self.template_of.get(&m) else {
            return false;
        };
        if self.state[t] == State::Joining {
            self.remaining[t] = self.remaining[t].saturating_sub(1);
            if self.remaining[t] == 0 {
                self.join(t, res);
            }
        }
        true
    }

    /// Every member of template `t` has ended: it completes with the joined results, or
    /// fails (GZ2001) when some did not complete. Either way its dependents see the joined
    /// value (`${t.results}` for a `tolerate_failures` task after failures).
    ///
    /// The members' results and errors move into the joined value: the plan keeps them
    /// only until the join (a 1,000,000-task fan-out workflow kept every one of them).
    fn join(&mut self, t: usize, res: &mut Resolution) {
        let members = self.members.get(&t).cloned().unwrap_or_default();
        let outcomes: Vec<(String, MemberOutcome)> = members
            .iter()
            .map(|&m| {
                let outcome = match (self.results[m].take(), self.failures[m].take()) {
                    (Some(result), _) => MemberOutcome::Completed(result),
                    (None, Some((status, error))) => MemberOutcome::Ended(status, error),
                    (None, None) => MemberOutcome::Ended("pending".into(), Value::Null),
                };
                (self.spec.tasks[m].id.clone(), outcome)
            })
            .collect();
        let value = fanout::joined(outcomes.iter().map(|(id, o)| (id.as_str(), o)));
        let failed = value["failed"].as_u64().unwrap_or(0);
        self.results[t] = Some(value.clone());
        if failed == 0 {
            self.state[t] = State::Completed;
            res.joined.push(JoinedTask {
                task_id: self.spec.tasks[t].id.clone(),
                result: JsonText::of_value(&value),
            });
            for k in 0..self.dependents(t).len() {
                let d = self.dependents(t)[k];
                self.one_less(d, res);
            }
            return;
        }
        let first = outcomes
            .iter()
            .find(|(_, o)| !matches!(o, MemberOutcome::Completed(_)))
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        let error = GzError::new(
            ErrorCode::TaskFailed,
            format!(
                "{failed} of {} item task(s) of {} did not complete (first: {first})",
                members.len(),
                self.spec.tasks[t].id
            ),
        )
        .with_hint("a later task with `tolerate_failures: true` still runs and gets every outcome in `${<template>.results}`");
        self.fail(t, error, res);
    }
}
