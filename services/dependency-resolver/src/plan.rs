//! One workflow's dependency state: which tasks are done, which are ready, which must be
//! skipped, and the parameters of ready tasks with `${…}` references substituted.
//!
//! Pure and rebuildable: a [`Plan`] is built from the spec plus the tasks that already
//! finished, so a restarted resolver can pick up any workflow.

use std::collections::HashMap;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{BlockedTask, FinishedTask, ReadyTask, Resolution};
use gleitzeit_workflow::{substitute, Dag, WorkflowSpec};
use serde_json::Value;

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
        let mut plan = Plan {
            spec,
            dag,
            index,
            names,
            state: vec![State::Waiting; n],
            remaining,
            results: vec![None; n],
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
                    self.remaining[d] = self.remaining[d].saturating_sub(1);
                    if self.remaining[d] == 0 && self.state[d] == State::Waiting {
                        self.release(d, &mut res);
                    }
                }
            } else {
                self.state[i] = State::Failed;
                self.skip_dependents(i, &mut res);
            }
        }
        res
    }

    /// Substitutes a ready task's parameters and reports it ready (or failed).
    fn release(&mut self, i: usize, res: &mut Resolution) {
        let task = &self.spec.tasks[i];
        let lookup = |key: &str| -> Option<&Value> {
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
                res.failed.push(BlockedTask {
                    task_id: task.id.clone(),
                    error,
                });
                self.state[i] = State::Failed;
                self.skip_dependents(i, res);
            }
        }
    }

    /// Marks every task downstream of `i` skipped (iteratively: chains can be 100k deep).
    fn skip_dependents(&mut self, i: usize, res: &mut Resolution) {
        let failed_id = self.spec.tasks[i].id.clone();
        let mut stack: Vec<usize> = self.dag.dependents(i).to_vec();
        while let Some(d) = stack.pop() {
            if matches!(self.state[d], State::Failed | State::Completed) {
                continue;
            }
            self.state[d] = State::Failed;
            let error = GzError::new(
                ErrorCode::DependencyFailed,
                format!("skipped: dependency {failed_id} did not complete"),
            );
            res.skipped.push(BlockedTask {
                task_id: self.spec.tasks[d].id.clone(),
                error,
            });
            stack.extend_from_slice(self.dag.dependents(d));
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
