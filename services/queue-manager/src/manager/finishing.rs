//! Finishing workflows: completed or failed when every task is terminal, cancelled or
//! failed on request or timeout (running work is stopped through its engines), and the
//! final event with the results.

use std::collections::HashMap;

use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{CancelTasks, TaskRef};
use gleitzeit_protocol::Target;
use gleitzeit_store::{TaskStatus, WorkflowStatus};
use gleitzeit_workflow::OnFailure;
use serde_json::{json, Value};
use tracing::{info, warn};

use super::{status_word, Changes, Manager, RESULTS_IN_EVENT_LIMIT};

impl Manager {
    pub(super) async fn check_finished(&mut self, id: &str) {
        let Some(wf) = self.wfs.get_mut(id) else {
            return;
        };
        if wf.terminal < wf.tasks.len() || wf.record.status.is_terminal() {
            return;
        }
        let ok = (wf.failed == 0 && wf.skipped == 0) || wf.on_failure == OnFailure::Continue;
        wf.record.status = if ok {
            WorkflowStatus::Completed
        } else {
            WorkflowStatus::Failed
        };
        wf.record.finished_at = Some(now_millis());
        if !ok {
            let first = wf
                .tasks
                .iter()
                .find(|t| t.status == TaskStatus::Failed)
                .map(|t| t.task_id.clone());
            let err = GzError::new(
                ErrorCode::TaskFailed,
                format!(
                    "{} task(s) failed, {} skipped{}",
                    wf.failed,
                    wf.skipped,
                    first
                        .map(|f| format!(" (first failure: {f})"))
                        .unwrap_or_default()
                ),
            );
            wf.record.error = serde_json::to_value(err).ok();
        }
        let mut changes = Changes::default();
        changes.workflows.insert(id.to_string());
        let _ = self.flush(changes).await;
        self.finish_announce(id);
    }
    pub(super) fn finish_announce(&mut self, id: &str) {
        let Some(wf) = self.wfs.remove(id) else {
            return;
        };
        if let Err(e) = self.store.release(id, self.client.id()) {
            warn!(workflow = %id, error = %e, "could not release ownership");
        }
        let finished_id = id.to_string();
        let mut payload = self.progress(&wf);
        payload["error"] = wf.record.error.clone().unwrap_or(Value::Null);
        if wf.tasks.len() <= RESULTS_IN_EVENT_LIMIT {
            let results: serde_json::Map<String, Value> = wf
                .tasks
                .iter()
                .filter_map(|t| t.result.clone().map(|r| (t.task_id.clone(), r)))
                .collect();
            payload["task_results"] = Value::Object(results);
        }
        let event = match wf.record.status {
            WorkflowStatus::Completed => events::WORKFLOW_COMPLETED,
            WorkflowStatus::Cancelled => events::WORKFLOW_CANCELLED,
            _ => events::WORKFLOW_FAILED,
        };
        info!(workflow = %id, status = %status_word(wf.record.status), completed = wf.completed, failed = wf.failed, skipped = wf.skipped, "workflow finished");
        self.emit(id, event, payload);
        self.events.borrow_mut().finished(&finished_id);
        if let Some(r) = &wf.resolver {
            let _ = self.client.emit(
                Target::Component(r.clone()),
                events::WORKFLOW_FORGET,
                json!({ "workflow_id": id }),
            );
        }
    }

    /// Cancels or fails a running workflow: unfinished tasks are cancelled, running work is
    /// stopped through the engines that hold it.
    pub(super) async fn stop_workflow(&mut self, id: &str, status: WorkflowStatus, error: GzError) {
        let Some(wf) = self.wfs.get_mut(id) else {
            return;
        };
        let now = now_millis();
        let mut changes = Changes::default();
        let mut running: HashMap<String, Vec<TaskRef>> = HashMap::new();
        for (i, t) in wf.tasks.iter_mut().enumerate() {
            if t.status.is_terminal() {
                continue;
            }
            if t.status == TaskStatus::Running {
                if let Some(engine) = &wf.info[i].engine {
                    running.entry(engine.clone()).or_default().push(TaskRef {
                        workflow_id: id.to_string(),
                        task_id: t.task_id.clone(),
                    });
                }
            }
            t.status = TaskStatus::Cancelled;
            t.finished_at = Some(now);
            t.error =
                serde_json::to_value(GzError::new(ErrorCode::Cancelled, error.message.clone()))
                    .ok();
            wf.terminal += 1;
            changes.task(id, i);
        }
        wf.record.status = status;
        wf.record.finished_at = Some(now);
        wf.record.error = serde_json::to_value(&error).ok();
        changes.workflows.insert(id.to_string());
        let _ = self.flush(changes).await;
        for (engine, tasks) in running {
            let payload = serde_json::to_value(CancelTasks { tasks }).unwrap_or(Value::Null);
            let _ = self
                .client
                .emit(Target::Component(engine), events::CANCEL_TASKS, payload);
        }
        self.finish_announce(id);
    }
}
