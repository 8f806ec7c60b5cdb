//! Submitting and cancelling workflows: a submission is checked (size limits, the spec,
//! a free id), stored with its tasks and owned by this queue-manager before it is
//! acknowledged; a cancel of a workflow another queue-manager runs goes on to it.

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{SubmitWorkflow, WorkflowRef};
use gleitzeit_protocol::replies::{CancelReply, SubmitReply};
use gleitzeit_protocol::{to_payload, Envelope};
use gleitzeit_store::{TaskRecord, WorkflowRecord, WorkflowStatus};
use gleitzeit_workflow::{prepare_spec, WorkflowSpec};
use serde_json::json;
use tracing::info;

use super::ownership::Access;
use super::{Manager, OWNER_TTL};
use crate::machine::Now;

impl Manager {
    /// A submission (its raw size was checked before it was decoded).
    pub(super) async fn submit(
        &mut self,
        env: &Envelope,
        sub: SubmitWorkflow,
    ) -> Result<SubmitReply, GzError> {
        let spec: WorkflowSpec = serde_json::from_value(sub.spec).map_err(|e| {
            GzError::new(
                ErrorCode::ValidationFailed,
                format!("invalid workflow: {e}"),
            )
        })?;
        let parsed = prepare_spec(spec, &self.catalog).map_err(|diags| {
            let first = diags.iter().find(|d| d.is_error());
            let code = first
                .and_then(|d| ErrorCode::from_code(&d.code))
                .unwrap_or(ErrorCode::ValidationFailed);
            GzError::new(code, first.map(|d| d.to_string()).unwrap_or_default()).with_details(
                json!({ "diagnostics": diags.iter().map(|d| d.to_string()).collect::<Vec<_>>() }),
            )
        })?;
        let spec = parsed.spec;
        let id = match sub.workflow_id {
            Some(id) if id.len() <= 200 && !id.is_empty() => id,
            Some(_) => {
                return Err(GzError::new(
                    ErrorCode::InvalidField,
                    "workflow_id must be 1..=200 characters",
                ))
            }
            None => format!("wf-{}", uuid::Uuid::new_v4().simple()),
        };
        if self.machine.contains(&id) {
            return Err(in_use(&id));
        }
        let spec_json = to_payload(&spec)?;
        self.limits.check_bytes(&spec_json)?;
        let now = Now::current();
        let record = WorkflowRecord {
            id: id.clone(),
            name: spec.name.clone(),
            status: WorkflowStatus::Pending,
            spec: spec_json,
            base_dir: sub.base_dir,
            total_tasks: spec.tasks.len() as u64,
            created_at: now.ms,
            started_at: None,
            finished_at: None,
            error: None,
            owner: env.auth.as_ref().map(|a| a.user.clone()),
        };
        let tasks: Vec<TaskRecord> = spec
            .tasks
            .iter()
            .map(|t| {
                let priority = i32::from(t.priority.level());
                TaskRecord::pending(
                    id.as_str(),
                    t.id.as_str(),
                    t.name.as_str(),
                    t.method.as_str(),
                    priority,
                )
            })
            .collect();
        let owner = self.client.id().to_string();
        let (mut record, tasks) = self
            .persistence
            .call(move |s| {
                if s.workflow(&record.id)?.is_some() {
                    return Ok(Err(in_use(&record.id)));
                }
                s.create_workflow(&record, &tasks)?;
                // The submitter owns the new workflow (several queue-managers may share a store).
                s.claim(&record.id, &owner, OWNER_TTL)?;
                Ok(Ok((record, tasks)))
            })
            .await??;
        // The spec lives in the store; memory keeps only the per-task state.
        let spec_json = std::mem::take(&mut record.spec);
        let total = tasks.len();
        if !self.machine.add(record, &spec, tasks, now) {
            return Err(in_use(&id));
        }
        drop(spec);
        if let Some(wf) = self.machine.workflow(&id) {
            info!(workflow = %id, name = %wf.record.name, tasks = total, "workflow submitted");
            let progress = crate::machine::payload(wf.progress());
            self.publisher
                .emit(&id, events::WORKFLOW_SUBMITTED, progress);
        }
        self.plan(&id, Some(spec_json)).await;
        Ok(SubmitReply {
            workflow_id: id,
            total_tasks: total,
        })
    }

    /// Cancels a workflow; `Ok(None)` when the request went on to the owner.
    pub(super) async fn cancel(
        &mut self,
        env: &Envelope,
        r: WorkflowRef,
    ) -> Result<Option<CancelReply>, GzError> {
        self.check_access(env, &r.workflow_id, Access::Cancel)
            .await?;
        if let Some(step) = self.machine.cancel(&r.workflow_id, Now::current()) {
            self.run(step).await;
            return Ok(Some(CancelReply {
                workflow_id: r.workflow_id,
                cancelled: true,
                status: WorkflowStatus::Cancelled,
            }));
        }
        let id = r.workflow_id.clone();
        match self.persistence.call(move |s| s.workflow(&id)).await? {
            Some(w) if !w.status.is_terminal() && self.forward_to_owner(env).await => Ok(None),
            Some(w) => Ok(Some(CancelReply {
                workflow_id: w.id,
                cancelled: false,
                status: w.status,
            })),
            None => Err(GzError::new(
                ErrorCode::WorkflowNotFound,
                format!("no workflow {}", r.workflow_id),
            )),
        }
    }
}

fn in_use(id: &str) -> GzError {
    GzError::new(
        ErrorCode::InvalidField,
        format!("workflow id {id} is already in use"),
    )
}
