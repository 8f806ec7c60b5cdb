//! Submitting and cancelling workflows: a submission is checked (size limits, the spec,
//! a free id), stored with its tasks (and its idempotency key, if it has one) and owned by
//! this queue-manager before it is acknowledged; a submission repeating a kept key is
//! answered with the first one's workflow; a cancel of a workflow another queue-manager
//! runs goes on to it.

use std::sync::Arc;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::payloads::{SubmitWorkflow, WorkflowRef};
use gleitzeit_protocol::replies::{CancelReply, SubmitReply};
use gleitzeit_protocol::Envelope;
use gleitzeit_store::idempotency::fingerprint;
use gleitzeit_store::{
    Creation, Idempotency, JsonText, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus,
};
use gleitzeit_workflow::prepare_spec_with_text_parameters;
use gleitzeit_workflow::text_parameters::{
    parse_with_text_parameters, ready_as_written, write_with_text_parameters,
};
use serde_json::json;
use tracing::info;

use super::ownership::Access;
use super::planning::EARLY_PLAN_BYTES;
use super::{Manager, OWNER_TTL};
use crate::machine::{open_task, open_workflow, Effect, Now, Shape, Shared};

/// What a submission made: its reply, and whether it stored a new workflow (not one a
/// repeated idempotency key names).
pub(super) struct Submitted {
    pub(super) reply: SubmitReply,
    pub(super) new: bool,
}

impl Submitted {
    fn existing(reply: SubmitReply) -> Self {
        Submitted { reply, new: false }
    }
}

impl Manager {
    /// A submission (its raw size was checked before it was decoded). A new workflow's
    /// tasks ready at once go out after the reply ([`Manager::open`]).
    pub(super) async fn submit(
        &mut self,
        env: &Envelope,
        sub: SubmitWorkflow,
    ) -> Result<Submitted, GzError> {
        // Read with each task's parameters kept as text, checked one task at a time: as
        // trees of values the parameters of a 100,000-task spec took ~65 MB.
        let (spec, params) = parse_with_text_parameters(sub.spec.text().unwrap_or("null"))
            .map_err(|e| {
                GzError::new(
                    ErrorCode::ValidationFailed,
                    format!("invalid workflow: {e}"),
                )
            })?;
        // (Its task count was checked before it was read: `Manager::decode`.)
        drop(sub.spec);
        let parsed =
            prepare_spec_with_text_parameters(spec, &params, &self.catalog).map_err(|diags| {
                let first = diags.iter().find(|d| d.is_error());
                let code = first
                    .and_then(|d| ErrorCode::from_code(&d.code))
                    .unwrap_or(ErrorCode::ValidationFailed);
                GzError::new(code, first.map(|d| d.to_string()).unwrap_or_default()).with_details(
                    json!({
                        "diagnostics": diags.iter().map(|d| d.to_string()).collect::<Vec<_>>()
                    }),
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
        // Written as text with the parameters put back in place (the machine reads only
        // the scheduling facts; the text goes to the store and the resolver).
        let (written, params) = write_with_text_parameters(&spec, params);
        let spec_json = written.map(JsonText::from_raw).map_err(|e| {
            GzError::new(ErrorCode::Internal, format!("cannot write the spec: {e}"))
        })?;
        self.limits.check_len(spec_json.len())?;
        let idempotency = match sub.idempotency_key {
            Some(key) if key.len() <= 200 && !key.is_empty() => {
                let fingerprint =
                    fingerprint(spec_json.text().unwrap_or("null"), sub.base_dir.as_deref());
                if let Some(reply) = self.resubmitted(&key, &fingerprint).await? {
                    return Ok(Submitted::existing(reply));
                }
                Some((key, fingerprint))
            }
            Some(_) => {
                return Err(GzError::new(
                    ErrorCode::InvalidField,
                    "idempotency_key must be 1..=200 characters",
                ))
            }
            None => None,
        };
        if self.machine.contains(&id) {
            return Err(in_use(&id));
        }
        let now = Now::current();
        let mut record = WorkflowRecord {
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
        // What the machine keeps of the spec is taken now, and the records are made from
        // the spec's own strings: the spec is gone before the records are stored and taken
        // into memory (for 100,000 tasks that is ~40 MB less at the submission's peak).
        let Some(shape) = Shape::of(&spec, &[]) else {
            return Err(GzError::new(
                ErrorCode::Internal,
                "the spec's tasks could not be taken in",
            ));
        };
        // A small spec goes to a resolver while it is stored (both take tens of
        // milliseconds for 10,000 tasks), once the store showed its id free: a plan for an
        // id in use would replace that workflow's plan at the resolver.
        let early_plan = record.spec.len() <= EARLY_PLAN_BYTES && {
            let wid = record.id.clone();
            self.persistence
                .call(move |s| s.workflow_head(&wid))
                .await?
                .is_none()
        };
        // Tasks ready as written are stored queued and named started in the plan
        // (`machine/opening.rs`).
        let mut shared = Shared::new(Arc::from(id.as_str()));
        let mut started = Vec::new();
        let tasks: Vec<TaskRecord> = spec
            .tasks
            .into_iter()
            .zip(params)
            .map(|(t, params)| {
                let priority = i32::from(t.priority.level());
                let ready = ready_as_written(&t, &params);
                let mut task = shared.pending(t.id, t.name, &t.method, priority);
                if ready {
                    open_task(&mut task, params, now);
                    if early_plan {
                        started.push(task.task_id.to_string());
                    }
                }
                task
            })
            .collect();
        if tasks.iter().any(|t| t.status == TaskStatus::Queued) {
            open_workflow(&mut record, now);
        }
        if early_plan {
            self.plan_new(&id, record.spec.clone(), &started);
        }
        drop(started);
        let owner = self.client.id().to_string();
        let created = self
            .persistence
            .call(move |s| {
                if s.workflow_head(&record.id)?.is_some() {
                    return Ok(Err(in_use(&record.id)));
                }
                if let Some((key, fingerprint)) = &idempotency {
                    let idem = Idempotency { key, fingerprint };
                    if let Creation::Existing { workflow_id } =
                        s.create_workflow_once(&idem, &record, &tasks)?
                    {
                        // Another queue-manager stored this key in the meantime.
                        return Ok(Ok(Err(workflow_id)));
                    }
                } else {
                    s.create_workflow(&record, &tasks)?;
                }
                // The submitter owns the new workflow (several queue-managers may share a store).
                s.claim(&record.id, &owner, OWNER_TTL)?;
                Ok(Ok(Ok((record, tasks))))
            })
            .await??;
        let (mut record, tasks) = match created {
            Ok(new) => new,
            Err(existing) => return self.existing_reply(existing).await.map(Submitted::existing),
        };
        // The spec lives in the store; memory keeps only the per-task state.
        let spec_json = std::mem::take(&mut record.spec);
        let total = tasks.len();
        if !self.machine.add_shaped(record, shape, tasks, now) {
            return Err(in_use(&id));
        }
        if let Some(wf) = self.machine.workflow(&id) {
            info!(workflow = %id, name = %wf.record.name, tasks = total, "workflow submitted");
            let progress = crate::machine::payload(wf.progress());
            self.publisher
                .emit(&id, events::WORKFLOW_SUBMITTED, progress);
        }
        if !early_plan {
            self.plan(&id, Some(spec_json)).await;
        }
        Ok(Submitted {
            reply: SubmitReply {
                workflow_id: id,
                total_tasks: total,
            },
            new: true,
        })
    }

    /// A new workflow was stored and acknowledged: its tasks queued already are announced
    /// and go to the engines waiting for work (`machine/opening.rs`). The engines' answers
    /// go out first: numbering and writing the announcements of 10,000 queued tasks took
    /// ~15 ms, which the first tasks no longer wait for. The announcements are still
    /// published before the events of the tasks handed out (numbered in that order).
    pub(super) async fn open(&mut self, id: &str) {
        let opening = self.machine.opening(id);
        if !self.machine.may_serve() {
            return self.send(opening).await;
        }
        let serve = self.machine.serve(Now::current());
        let effects = self.settle(serve).await;
        let (replies, rest): (Vec<Effect>, Vec<Effect>) = effects
            .into_iter()
            .partition(|e| matches!(e, Effect::Reply { .. }));
        self.send(replies).await;
        self.send(opening).await;
        self.send(rest).await;
    }

    /// The reply to a submission whose idempotency key is already kept: the first
    /// submission's workflow (`None` when the key is new); GZ3031 for another spec.
    async fn resubmitted(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<SubmitReply>, GzError> {
        let lookup = key.to_string();
        let Some(kept) = self
            .persistence
            .call(move |s| s.kept_submission(&lookup))
            .await?
        else {
            return Ok(None);
        };
        match kept.resubmitted(key, fingerprint).map_err(GzError::from)? {
            Creation::Existing { workflow_id } => self.existing_reply(workflow_id).await.map(Some),
            Creation::Created => Ok(None),
        }
    }

    /// The submit reply for a workflow created by an earlier submission with the same key.
    async fn existing_reply(&self, workflow_id: String) -> Result<SubmitReply, GzError> {
        info!(workflow = %workflow_id, "submission repeated with its idempotency key; answering the first workflow");
        let total_tasks = match self.machine.workflow(&workflow_id) {
            Some(wf) => wf.record.total_tasks as usize,
            None => {
                let id = workflow_id.clone();
                self.persistence
                    .call(move |s| s.workflow_head(&id))
                    .await?
                    .map_or(0, |w| w.total_tasks as usize)
            }
        };
        Ok(SubmitReply {
            workflow_id,
            total_tasks,
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
        match self.persistence.call(move |s| s.workflow_head(&id)).await? {
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
