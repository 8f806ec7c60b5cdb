//! Ending workflows: cancelled on request, failed on timeout or when the resolver refuses
//! them for good (unfinished tasks are cancelled, running work is stopped through the
//! engines that hold it), and the final event with the results.

use std::collections::HashMap;
use std::sync::Arc;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::TaskRef;
use gleitzeit_protocol::replies::WorkflowFinished;
use gleitzeit_store::{TaskStatus, WorkflowStatus};

use super::{Effect, Machine, Now, Step, Wf, WfKey, RESULTS_IN_EVENT_LIMIT};

impl Machine {
    /// Cancels workflow `id` (`None` when it is not here).
    pub(crate) fn cancel(&self, id: &str, now: Now) -> Option<Step> {
        let error = GzError::new(
            ErrorCode::Cancelled,
            format!("workflow {id} cancelled by request"),
        );
        self.stop(id, WorkflowStatus::Cancelled, &error, now)
    }

    /// Fails workflow `id` with `error` (`None` when it is not here).
    pub(crate) fn fail(&self, id: &str, error: &GzError, now: Now) -> Option<Step> {
        self.stop(id, WorkflowStatus::Failed, error, now)
    }

    fn stop(&self, id: &str, status: WorkflowStatus, error: &GzError, now: Now) -> Option<Step> {
        let key = self.wfs.get_key_value(id)?.0.clone();
        let mut step = Step::default();
        self.stop_into(&mut step, &key, status, error, now);
        Some(step)
    }

    /// Proposes ending workflow `key` with `status`: unfinished tasks are cancelled and
    /// their running work stopped.
    pub(super) fn stop_into(
        &self,
        step: &mut Step,
        key: &WfKey,
        status: WorkflowStatus,
        error: &GzError,
        now: Now,
    ) {
        let Some(wf) = self.wfs.get(key) else {
            return;
        };
        if step.workflow_is_final(self, key) {
            return;
        }
        let task_error =
            serde_json::to_value(GzError::new(ErrorCode::Cancelled, error.message.clone())).ok();
        let mut running: HashMap<Arc<str>, Vec<TaskRef>> = HashMap::new();
        // The workflow's tasks and those this step adds (a fan-out's items).
        for i in 0..wf.tasks.len() + step.added_to(key) {
            let Some(from) = step.status(self, key, i) else {
                continue;
            };
            if from == TaskStatus::Running {
                if let Some(engine) = wf.info.get(i).and_then(|info| info.engine.as_ref()) {
                    running.entry(engine.clone()).or_default().push(TaskRef {
                        workflow_id: key.to_string(),
                        task_id: wf.tasks[i].task_id.to_string(),
                    });
                }
            }
            if let Some(t) = self.transition(step, key, i, TaskStatus::Cancelled, now) {
                t.error = task_error.clone();
            }
        }
        self.workflow_transition(step, key, status, Some(error), now);
        for (engine, tasks) in running {
            step.effects.push(Effect::CancelTasks { engine, tasks });
        }
    }
}

impl Machine {
    /// The error that stops a workflow when the step fails a task of a `fail_fast` batch
    /// for good (GZ2001: the workflow fails, the rest is cancelled).
    pub(super) fn failed_fast(&self, step: &Step, wf: &Wf, key: &WfKey) -> Option<GzError> {
        if step.workflow_is_final(self, key) {
            return None;
        }
        let fail_fast = |i: usize| {
            wf.info
                .get(i)
                .or_else(|| step.added_info(key, i))
                .is_some_and(|info| info.fail_fast)
        };
        let i = step.failed_in(key).find(|&i| fail_fast(i))?;
        let t = step.record(self, key, i)?;
        Some(
            GzError::new(
                ErrorCode::TaskFailed,
                format!(
                    "batch task {} ({}) failed and the batch is fail_fast: the rest is cancelled",
                    t.task_id, t.name
                ),
            )
            .with_hint("without `fail_fast: true` the other files go on and a `tolerate_failures` task gets every outcome"),
        )
    }
}

/// The final event of a finished workflow: its progress, error and (for workflows up to
/// [`RESULTS_IN_EVENT_LIMIT`] tasks) its results.
pub(super) fn announce(wf: &Wf) -> Effect {
    let task_results = (wf.tasks.len() <= RESULTS_IN_EVENT_LIMIT).then(|| {
        wf.tasks
            .iter()
            .filter_map(|t| t.result.clone().map(|r| (t.task_id.to_string(), r)))
            .collect()
    });
    let payload = super::payload(WorkflowFinished {
        progress: wf.progress(),
        error: wf.record.error.clone(),
        task_results,
    });
    let event = match wf.record.status {
        WorkflowStatus::Completed => events::WORKFLOW_COMPLETED,
        WorkflowStatus::Cancelled => events::WORKFLOW_CANCELLED,
        _ => events::WORKFLOW_FAILED,
    };
    Effect::Event {
        wf: Arc::from(wf.record.id.as_str()),
        event,
        payload: payload.into(),
    }
}
