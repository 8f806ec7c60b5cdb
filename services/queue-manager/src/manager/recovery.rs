//! Resuming unfinished workflows from the store (at start, and every few seconds for
//! workflows whose owner stopped renewing).
//!
//! A stored workflow that cannot be loaded (an unreadable row or spec, tasks that do not
//! match the spec, numbers out of range) is skipped and marked failed with GZ5002, so that
//! one poisoned record never stops the queue-manager from starting or the others from
//! running.

use std::collections::HashSet;

use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_store::{JsonText, Store, StoreError, TaskRecord, WorkflowRecord, WorkflowStatus};
use gleitzeit_workflow::{first_range_issue, WorkflowSpec};
use serde_json::Value;
use tracing::{info, warn};

use super::{Manager, OWNER_TTL};
use crate::machine::Now;

/// A stored workflow read back: its record, spec (parsed and as JSON) and tasks.
type Stored = (WorkflowRecord, WorkflowSpec, JsonText, Vec<TaskRecord>);
/// A stored workflow read back, or why it cannot be used.
type Loaded = Result<Stored, String>;

impl Manager {
    /// Loads unfinished workflows nobody else owns: queued and running tasks go back to the
    /// queue (their work may run again: at-least-once), and each workflow is planned again.
    ///
    /// # Errors
    ///
    /// Only when the store cannot list or claim workflows; a single unloadable workflow is
    /// marked failed (GZ5002) and skipped.
    pub(crate) async fn recover(&mut self) -> Result<(), GzError> {
        let owner = self.client.id().to_string();
        let known: HashSet<String> = self.machine.ids().iter().map(|k| k.to_string()).collect();
        let found = self
            .persistence
            .call(move |s| take_over(s, &owner, &known))
            .await?;
        for (record, spec, spec_json, tasks) in found {
            let id = record.id.clone();
            info!(workflow = %id, "taking over an unfinished workflow");
            if !self.machine.add(record, &spec, tasks, Now::current()) {
                continue;
            }
            self.publisher.log.open(&id, now_millis() * 1000);
            self.plan(&id, Some(spec_json)).await;
        }
        Ok(())
    }
}

/// Claims and reads the unfinished workflows that no other queue-manager owns (their
/// owner, if any, stopped renewing); unloadable ones are marked failed and released.
fn take_over(
    store: &dyn Store,
    owner: &str,
    known: &HashSet<String>,
) -> Result<Vec<Stored>, StoreError> {
    let mut out = Vec::new();
    for id in store.unfinished_ids()? {
        if known.contains(&id) || !store.claim(&id, owner, OWNER_TTL)? {
            continue;
        }
        match load(store, &id)? {
            Some(Ok(loaded)) => out.push(loaded),
            Some(Err(reason)) => mark_unloadable(store, owner, &id, &reason),
            None => {}
        }
    }
    Ok(out)
}

/// Reads one workflow and checks that it can be scheduled; `Err` names what is wrong.
fn load(store: &dyn Store, id: &str) -> Result<Option<Loaded>, StoreError> {
    let record = match store.workflow(id) {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(None),
        Err(e @ StoreError::Corrupt(_)) => return Ok(Some(Err(e.to_string()))),
        Err(e) => return Err(e),
    };
    let tasks = match store.tasks(id) {
        Ok(tasks) => tasks,
        Err(e @ StoreError::Corrupt(_)) => return Ok(Some(Err(e.to_string()))),
        Err(e) => return Err(e),
    };
    Ok(Some(check_loaded(record, tasks)))
}

/// Marks a workflow that cannot be loaded failed with GZ5002, so recovery does not meet
/// it again.
fn mark_unloadable(store: &dyn Store, owner: &str, id: &str, reason: &str) {
    warn!(workflow = %id, %reason, "stored workflow cannot be loaded; marking it failed (GZ5002)");
    let error = GzError::new(
        ErrorCode::StoredRecordInvalid,
        format!("stored workflow {id} cannot be loaded: {reason}"),
    );
    let error = serde_json::to_value(&error).unwrap_or(Value::Null);
    if let Err(e) = store.mark_unloadable(id, &error, now_millis()) {
        warn!(workflow = %id, error = %e, "could not mark the stored workflow failed");
    }
    if let Err(e) = store.release(id, owner) {
        warn!(workflow = %id, error = %e, "could not release ownership");
    }
}

/// Checks a stored workflow: its spec reads as a spec, its numbers are in range, and its
/// tasks are the spec's tasks in the spec's order (then the tasks its fan-outs made).
fn check_loaded(mut record: WorkflowRecord, tasks: Vec<TaskRecord>) -> Loaded {
    if !matches!(
        record.status,
        WorkflowStatus::Pending | WorkflowStatus::Running
    ) {
        return Err(format!("unexpected status {:?}", record.status));
    }
    let spec_json = std::mem::take(&mut record.spec);
    let mut spec: WorkflowSpec = spec_json
        .parse()
        .map_err(|e| format!("stored spec unreadable: {e}"))?;
    // The resolver gets the text; the machine reads only the scheduling facts.
    spec.forget_parameters();
    if let Some(issue) = first_range_issue(&spec) {
        return Err(format!("stored spec out of range: {issue}"));
    }
    // Tasks past the spec's own are the members of its fan-outs.
    let templates = gleitzeit_workflow::fanout::Templates::of(&spec);
    if spec.tasks.len() > tasks.len()
        || spec
            .tasks
            .iter()
            .zip(&tasks)
            .any(|(s, t)| *s.id != *t.task_id)
        || tasks[spec.tasks.len()..]
            .iter()
            .any(|t| templates.template_of(&t.task_id).is_none())
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
    use gleitzeit_store::TaskStatus;
    use serde_json::json;

    fn record(spec: Value) -> WorkflowRecord {
        WorkflowRecord {
            id: "w".into(),
            name: "w".into(),
            status: WorkflowStatus::Running,
            spec: JsonText::of(&spec).expect("a spec"),
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
            status: TaskStatus::Queued,
            ..TaskRecord::pending("w", id, id, "python/execute", 2)
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
