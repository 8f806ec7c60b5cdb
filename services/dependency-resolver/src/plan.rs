//! One workflow's dependency state: which tasks are done, which are ready, which must be
//! skipped, and the parameters of ready tasks with `${…}` references substituted.
//!
//! Pure and rebuildable: a [`Plan`] is built from the spec plus the tasks that already
//! finished, so a restarted resolver can pick up any workflow.
//!
//! A task that did not complete skips its dependents, except those with
//! `tolerate_failures: true`: for them it counts as finished, and they run once all their
//! dependencies have ended. For the batch of the workflow (`metadata.batch`),
//! `${<template>.results}` is every file's outcome in file order: `{file, task_id, status,
//! result}` for a completed one (its primary value, as `${t}` gives it), `{file, task_id,
//! status, error}` otherwise. The queue-manager sends a failed task's error as
//! `result: {error}` of its [`FinishedTask`].

use std::collections::HashMap;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{BlockedTask, FinishedTask, ReadyTask, Resolution};
use gleitzeit_workflow::{batch, references, resolve_path, substitute, Dag, WorkflowSpec};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Started,
    Completed,
    Failed,
}

/// Dependency state of one workflow.
pub struct Plan {
    spec: WorkflowSpec,
    dag: Dag,
    index: HashMap<String, usize>,
    names: HashMap<String, usize>,
    state: Vec<State>,
    remaining: Vec<u32>,
    results: Vec<Option<Value>>,
    /// How a task that did not complete ended: its status and error.
    failures: Vec<Option<(String, Value)>>,
    /// The batch: its template's id and its tasks in file order.
    group: Option<(String, Vec<usize>)>,
}

impl Plan {
    /// Builds the plan; `finished` and `started` tasks are replayed first. The resolution
    /// lists every task ready now.
    pub fn build(
        spec: WorkflowSpec,
        finished: &[FinishedTask],
        started: &[String],
    ) -> Result<(Plan, Resolution), GzError> {
        let dag = Dag::from_spec(&spec);
        if let Err(cycle) = dag.topological_order() {
            let path: Vec<&str> = cycle.iter().map(|&i| spec.tasks[i].id.as_str()).collect();
            return Err(GzError::new(
                ErrorCode::CircularDependency,
                format!("circular dependency: {}", path.join(" -> ")),
            ));
        }
        let n = spec.tasks.len();
        let index: HashMap<String, usize> = spec
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.clone(), i))
            .collect();
        let names: HashMap<String, usize> = spec
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        let remaining = (0..n).map(|i| dag.dependencies(i).len() as u32).collect();
        let group = batch::members(&spec).map(|(template, members, _)| (template, members));
        let mut plan = Plan {
            spec,
            dag,
            index,
            names,
            state: vec![State::Waiting; n],
            remaining,
            results: vec![None; n],
            failures: vec![None; n],
            group,
        };
        for id in started {
            if let Some(&i) = plan.index.get(id) {
                plan.state[i] = State::Started;
            }
        }
        let mut res = plan.finish(finished);
        let roots: Vec<usize> = (0..n)
            .filter(|&i| plan.remaining[i] == 0 && plan.state[i] == State::Waiting)
            .collect();
        for i in roots {
            plan.release(i, &mut res);
        }
        Ok((plan, res))
    }

    /// Records finished tasks and returns what that unlocks or blocks.
    pub fn finish(&mut self, finished: &[FinishedTask]) -> Resolution {
        let mut res = Resolution::default();
        for f in finished {
            let Some(&i) = self.index.get(&f.task_id) else {
                continue;
            };
            if matches!(self.state[i], State::Completed | State::Failed) {
                continue;
            }
            if f.status == "completed" {
                self.state[i] = State::Completed;
                self.results[i] = Some(f.result.clone().unwrap_or(Value::Null));
                for k in 0..self.dag.dependents(i).len() {
                    let d = self.dag.dependents(i)[k];
                    self.one_less(d, &mut res);
                }
            } else {
                self.state[i] = State::Failed;
                let error = f
                    .result
                    .as_ref()
                    .and_then(|r| r.get("error"))
                    .cloned()
                    .unwrap_or(Value::Null);
                self.failures[i] = Some((f.status.clone(), error));
                self.skip_dependents(i, &mut res);
            }
        }
        res
    }

    /// A dependency of `d` ended: `d` is released when it was the last one.
    fn one_less(&mut self, d: usize, res: &mut Resolution) {
        self.remaining[d] = self.remaining[d].saturating_sub(1);
        if self.remaining[d] == 0 && self.state[d] == State::Waiting {
            self.release(d, res);
        }
    }

    /// `${<template>.results}`'s value when task `i` refers to the batch (see the module
    /// docs); `None` otherwise.
    fn group_value(&self, i: usize) -> Option<Value> {
        let (template, members) = self.group.as_ref()?;
        let task = &self.spec.tasks[i];
        if !references(&task.parameters)
            .iter()
            .any(|r| &r.task == template)
        {
            return None;
        }
        let results: Vec<Value> = members
            .iter()
            .map(|&m| {
                let t = &self.spec.tasks[m];
                let mut entry = Map::new();
                entry.insert("file".into(), json!(t.name));
                entry.insert("task_id".into(), json!(t.id));
                match (&self.results[m], &self.failures[m]) {
                    (Some(result), _) => {
                        entry.insert("status".into(), json!("completed"));
                        let primary = resolve_path(result, &[]).unwrap_or(result);
                        entry.insert("result".into(), primary.clone());
                    }
                    (None, Some((status, error))) => {
                        entry.insert("status".into(), json!(status));
                        entry.insert("error".into(), error.clone());
                    }
                    (None, None) => {
                        entry.insert("status".into(), json!("pending"));
                    }
                }
                Value::Object(entry)
            })
            .collect();
        let completed = results
            .iter()
            .filter(|r| r["status"] == "completed")
            .count();
        Some(json!({
            "results": results,
            "completed": completed,
            "failed": results.len() - completed,
        }))
    }

    /// Substitutes a ready task's parameters and reports it ready (or failed).
    fn release(&mut self, i: usize, res: &mut Resolution) {
        let group = self.group_value(i);
        let task = &self.spec.tasks[i];
        let lookup = |key: &str| -> Option<&Value> {
            if let (Some(value), Some((template, _))) = (&group, &self.group) {
                if key == template {
                    return Some(value);
                }
            }
            let j = self.index.get(key).or_else(|| self.names.get(key))?;
            self.results[*j].as_ref()
        };
        match substitute(&task.parameters, &lookup) {
            Ok(params) => {
                self.state[i] = State::Started;
                res.ready.push(ReadyTask {
                    task_id: task.id.clone(),
                    params,
                });
            }
            Err(e) => {
                let error = GzError::new(
                    ErrorCode::SubstitutionFailed,
                    format!("task {}: {e}", task.id),
                );
                self.failures[i] = Some(("failed".into(), json!(error)));
                res.failed.push(BlockedTask {
                    task_id: task.id.clone(),
                    error,
                });
                self.state[i] = State::Failed;
                self.skip_dependents(i, res);
            }
        }
    }

    /// Marks every task downstream of `i` skipped (iteratively: chains can be 100k deep),
    /// up to the tasks that tolerate failures: for them the skipped dependency counts as
    /// ended. Each edge is met once (a task is pushed once per dependency that just ended).
    fn skip_dependents(&mut self, i: usize, res: &mut Resolution) {
        let failed_id = self.spec.tasks[i].id.clone();
        let mut tolerant = Vec::new();
        let mut stack: Vec<usize> = self.dag.dependents(i).to_vec();
        while let Some(d) = stack.pop() {
            if self.spec.tasks[d].tolerate_failures {
                tolerant.push(d);
                continue;
            }
            if matches!(self.state[d], State::Failed | State::Completed) {
                continue;
            }
            self.state[d] = State::Failed;
            let error = GzError::new(
                ErrorCode::DependencyFailed,
                format!("skipped: dependency {failed_id} did not complete"),
            );
            self.failures[d] = Some(("skipped".into(), json!(error)));
            res.skipped.push(BlockedTask {
                task_id: self.spec.tasks[d].id.clone(),
                error,
            });
            stack.extend_from_slice(self.dag.dependents(d));
        }
        for d in tolerant {
            self.one_less(d, res);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use gleitzeit_workflow::{parse_workflow, MethodCatalog};
    use serde_json::json;

    fn spec(yaml: &str) -> WorkflowSpec {
        parse_workflow(yaml, &MethodCatalog::builtin())
            .expect("valid")
            .spec
    }

    fn done(id: &str, result: Value) -> FinishedTask {
        FinishedTask {
            task_id: id.into(),
            status: "completed".into(),
            result: Some(result),
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
        let ctx = &res.ready[0].params["context"];
        assert_eq!(ctx["xs"], json!([1, 2, 3]));
        assert_eq!(ctx["first"], json!(1));
        assert_eq!(ctx["text"], json!("got [1,2,3]"));
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
            result: Some(json!({"error": {"code": code, "message": "bad file"}})),
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
        let outcomes = &res.ready[0].params["context"]["outcomes"];
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
            res.ready[0].params["context"]["outcomes"][0]["status"],
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
}
