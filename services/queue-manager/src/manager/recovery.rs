//! Resuming unfinished workflows from the store (at start, and every few seconds for
//! workflows whose owner stopped renewing).
//!
//! A stored workflow that cannot be loaded (an unreadable row or spec, tasks that do not
//! match the spec, numbers out of range) is skipped and marked failed with GZ5002, so that
//! one poisoned record never stops the queue-manager from starting or the others from
//! running.

use std::sync::Arc;

use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_store::{StoreError, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus};
use gleitzeit_workflow::{first_range_issue, WorkflowSpec};
use serde_json::Value;
use tracing::{info, warn};

use super::{Manager, OWNER_TTL};

/// A stored workflow read back, or why it cannot be used.
type Loaded = Result<(WorkflowRecord, WorkflowSpec, Value, Vec<TaskRecord>), String>;

impl Manager {
    /// Loads unfinished workflows: queued and running tasks go back to the queue (their work
    /// may run again: at-least-once), and each workflow is planned again.
    ///
    /// # Errors
    ///
    /// Only when the store cannot list or claim workflows; a single unloadable workflow is
    /// marked failed (GZ5002) and skipped.
    pub(crate) async fn recover(&mut self) -> Result<(), StoreError> {
        // Unfinished workflows nobody else owns (their owner, if any, stopped renewing).
        let owner = self.client.id().to_string();
        for id in self.store.unfinished_ids()? {
            if self.wfs.contains_key(&id) || !self.store.claim(&id, &owner, OWNER_TTL)? {
                continue;
            }
            match self.load(&id)? {
                Some(Ok((record, spec, spec_json, tasks))) => {
                    self.resume(record, &spec, spec_json, tasks)
                }
                Some(Err(reason)) => self.mark_unloadable(&id, &reason),
                None => {}
            }
        }
        Ok(())
    }

    /// Reads one workflow and checks that it can be scheduled; `Err` names what is wrong.
    fn load(&self, id: &str) -> Result<Option<Loaded>, StoreError> {
        let record = match self.store.workflow(id) {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(e @ StoreError::Corrupt(_)) => return Ok(Some(Err(e.to_string()))),
            Err(e) => return Err(e),
        };
        let tasks = match self.store.tasks(id) {
            Ok(tasks) => tasks,
            Err(e @ StoreError::Corrupt(_)) => return Ok(Some(Err(e.to_string()))),
            Err(e) => return Err(e),
        };
        Ok(Some(check_loaded(record, tasks)))
    }

    /// Puts a loaded workflow back in memory, its queued work on the queue, and plans it.
    fn resume(
        &mut self,
        record: WorkflowRecord,
        spec: &WorkflowSpec,
        spec_json: Value,
        mut tasks: Vec<TaskRecord>,
    ) {
        let id = record.id.clone();
        for t in tasks.iter_mut() {
            if matches!(t.status, TaskStatus::Running | TaskStatus::Retrying) {
                t.status = TaskStatus::Queued;
            }
        }
        let mut wf = self.build_wf(record, spec, tasks);
        let key: Arc<str> = Arc::from(id.as_str());
        for (i, t) in wf.tasks.iter().enumerate() {
            match t.status {
                TaskStatus::Queued => {
                    self.queue
                        .enqueue(&wf.tasks[i].method, wf.info[i].priority, key.clone(), i);
                }
                TaskStatus::Completed => wf.completed += 1,
                TaskStatus::Failed => wf.failed += 1,
                TaskStatus::Skipped => wf.skipped += 1,
                _ => {}
            }
        }
        wf.terminal = wf.tasks.iter().filter(|t| t.status.is_terminal()).count();
        info!(workflow = %id, "taking over an unfinished workflow");
        self.events.borrow_mut().open(&id, now_millis() * 1000);
        self.wfs.insert(id.clone(), wf);
        self.plan(&id, Some(spec_json));
    }

    /// Marks a workflow that cannot be loaded failed with GZ5002, so recovery does not
    /// meet it again.
    fn mark_unloadable(&mut self, id: &str, reason: &str) {
        warn!(workflow = %id, %reason, "stored workflow cannot be loaded; marking it failed (GZ5002)");
        let error = GzError::new(
            ErrorCode::StoredRecordInvalid,
            format!("stored workflow {id} cannot be loaded: {reason}"),
        );
        let error = serde_json::to_value(&error).unwrap_or(Value::Null);
        if let Err(e) = self.store.mark_unloadable(id, &error, now_millis()) {
            warn!(workflow = %id, error = %e, "could not mark the stored workflow failed");
        }
        if let Err(e) = self.store.release(id, self.client.id()) {
            warn!(workflow = %id, error = %e, "could not release ownership");
        }
    }
}

/// Checks a stored workflow: its spec reads as a spec, its numbers are in range, and its
/// tasks are the spec's tasks in the spec's order.
fn check_loaded(mut record: WorkflowRecord, tasks: Vec<TaskRecord>) -> Loaded {
    if !matches!(
        record.status,
        WorkflowStatus::Pending | WorkflowStatus::Running
    ) {
        return Err(format!("unexpected status {:?}", record.status));
    }
    let spec_json = std::mem::take(&mut record.spec);
    let spec: WorkflowSpec = serde_json::from_value(spec_json.clone())
        .map_err(|e| format!("stored spec unreadable: {e}"))?;
    if let Some(issue) = first_range_issue(&spec) {
        return Err(format!("stored spec out of range: {issue}"));
    }
    if spec.tasks.len() != tasks.len()
        || spec
            .tasks
            .iter()
            .zip(&tasks)
            .any(|(s, t)| s.id != t.task_id)
    {
        return Err(format!(
            "stored tasks ({}) do not match the spec's tasks ({})",
            tasks.len(),
            spec.tasks.len()
        ));
    }
    Ok((record, spec, spec_json, tasks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(spec: Value) -> WorkflowRecord {
        WorkflowRecord {
            id: "w".into(),
            name: "w".into(),
            status: WorkflowStatus::Running,
            spec,
            base_dir: None,
            total_tasks: 1,
            created_at: 1,
            started_at: None,
            finished_at: None,
            error: None,
            owner: None,
        }
    }

    fn task(id: &str) -> TaskRecord {
        TaskRecord {
            workflow_id: "w".into(),
            task_id: id.into(),
            name: id.into(),
            method: "python/execute".into(),
            status: TaskStatus::Queued,
            priority: 2,
            attempts: 0,
            params: None,
            result: None,
            error: None,
            provider_id: None,
            queued_at: None,
            started_at: None,
            finished_at: None,
        }
    }

    fn spec(timeout: Value) -> Value {
        json!({ "name": "w", "timeout": timeout,
                "tasks": [{ "id": "a", "method": "python/execute" }] })
    }

    #[test]
    fn poisoned_records_are_refused_with_a_reason() {
        let reason = |r: Loaded| r.err().unwrap_or_default();
        assert!(
            reason(check_loaded(record(spec(json!(1e300))), vec![task("a")]))
                .contains("out of range")
        );
        assert!(
            reason(check_loaded(record(json!({ "name": 5 })), vec![task("a")]))
                .contains("unreadable")
        );
        assert!(
            reason(check_loaded(record(spec(json!(60))), vec![task("b")])).contains("do not match")
        );
        assert!(reason(check_loaded(record(spec(json!(60))), Vec::new())).contains("do not match"));
        assert!(check_loaded(record(spec(json!(60))), vec![task("a")]).is_ok());
    }
}
