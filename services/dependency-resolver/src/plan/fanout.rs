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
        let Some(fan) = self.fans.get(&t).cloned() else {
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
                    message: format!("task {}: {}", self.ids.id(t), error.message),
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
        let (template, template_name) = (self.ids.id(t), self.name(t));
        let count = items.len();
        let made: Vec<(MemberTask, Result<Value, GzError>)> = items
            .iter()
            .enumerate()
            .map(|(k, item)| {
                let task_id = fanout::member_id(template, k + 1, count);
                let params = substitute_item(&parameters, &lookup, item, k).map_err(|e| {
                    GzError::new(
                        ErrorCode::SubstitutionFailed,
                        format!("task {task_id}: {e}"),
                    )
                });
                let member = MemberTask {
                    name: fanout::member_name(template_name, k + 1),
                    task_id,
                    params: None,
                    error: None,
                };
                (member, params)
            })
            .collect();
        let mut expansion = Expansion {
            template: template.to_owned(),
            members: Vec::with_capacity(count),
        };
        let first = self.ids.len();
        for (mut member, params) in made {
            let m = self.ids.len();
            let state = match params {
                Ok(params) => {
                    member.params = Some(JsonText::of_value(&params));
                    State::Started
                }
                Err(error) => {
                    self.failures.insert(m, ("failed".into(), json!(error)));
                    member.error = Some(error);
                    State::Failed
                }
            };
            // Members are not in `by_name`: no reference can name one (the spec that is
            // validated does not have them), and a million of them would be a million keys.
            self.ids.push(member.task_id.as_str().into());
            self.state.push(state);
            self.remaining.push(0);
            expansion.members.push(member);
        }
        let positions = first..self.ids.len();
        let ended = positions
            .clone()
            .filter(|&m| self.state[m] == State::Failed)
            .count();
        self.made.push((positions, t));
        self.state[t] = State::Joining;
        self.remaining[t] = (count - ended) as u32;
        res.expanded.push(expansion);
        if self.remaining[t] == 0 {
            self.join(t, res);
        }
    }

    /// Member `m` ended (its state and result or failure are set): the last one joins its
    /// template. False when `m` is not a member.
    pub(super) fn member_ended(&mut self, m: usize, res: &mut Resolution) -> bool {
        let Some(t) = self.template_of(m) else {
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

    /// The template whose member is task `m`, if `m` is a member.
    fn template_of(&self, m: usize) -> Option<usize> {
        let after = self.made.partition_point(|(range, _)| range.start <= m);
        let (range, t) = self.made.get(after.checked_sub(1)?)?;
        range.contains(&m).then_some(*t)
    }

    /// Every member of template `t` has ended: it completes with the joined results, or
    /// fails (GZ2001) when some did not complete. Either way its dependents see the joined
    /// value (`${t.results}` for a `tolerate_failures` task after failures).
    ///
    /// The members' results and errors move into the joined value: the plan keeps them
    /// only until the join (a 1,000,000-task fan-out workflow kept every one of them).
    fn join(&mut self, t: usize, res: &mut Resolution) {
        let members = self
            .made
            .iter()
            .find(|(_, template)| *template == t)
            .map_or(0..0, |(members, _)| members.clone());
        let outcomes: Vec<(String, MemberOutcome)> = members
            .clone()
            .map(|m| {
                let outcome = match (self.results.remove(&m), self.failures.remove(&m)) {
                    (Some(result), _) => MemberOutcome::Completed(result),
                    (None, Some((status, error))) => MemberOutcome::Ended(status, error),
                    (None, None) => MemberOutcome::Ended("pending".into(), Value::Null),
                };
                (self.ids.id(m).to_owned(), outcome)
            })
            .collect();
        let value = fanout::joined(outcomes.iter().map(|(id, o)| (id.as_str(), o)));
        let failed = value["failed"].as_u64().unwrap_or(0);
        self.results.insert(t, value.clone());
        if failed == 0 {
            self.state[t] = State::Completed;
            res.joined.push(JoinedTask {
                task_id: self.ids.id(t).to_owned(),
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
                self.ids.id(t)
            ),
        )
        .with_hint("a later task with `tolerate_failures: true` still runs and gets every outcome in `${<template>.results}`");
        self.fail(t, error, res);
    }
}
