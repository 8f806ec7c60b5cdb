//! Fan-outs: the tasks a template (`batch: {from}`) makes at run time, and the template's
//! join (`gleitzeit_workflow::fanout`; the resolver decides both, the machine adds and
//! stores them).
//!
//! A template's members join the workflow in the step that stores them: their records,
//! the workflow's new `total_tasks` and the tasks' first moves (pending → queued, or →
//! failed when their parameters could not be substituted) are one store transaction, so a
//! restart finds either all of them or none (and the resolver then makes them again). The
//! template itself stays `pending` until the resolver joins it (pending → completed with
//! the joined results) or fails it.

use std::sync::Arc;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{Expansion, JoinedTask};
use gleitzeit_store::{TaskRecord, TaskStatus};
use gleitzeit_workflow::WorkflowSpec;

use super::{sharing, Machine, Now, Step, TaskInfo, WfKey};

impl Machine {
    /// Adds the members of an expansion to the step: queued with their parameters, or
    /// failed with their error. Nothing happens when the template is no longer pending (it
    /// expanded before: a rebuilt resolver reports its expansions again). A fan-out that
    /// would take the workflow past the queue-manager's task limit fails its template
    /// (GZ7012) instead: then it returns true (the resolver must be told).
    pub(super) fn expand_into(
        &self,
        step: &mut Step,
        key: &WfKey,
        exp: Expansion,
        now: Now,
    ) -> bool {
        let Some(wf) = self.wfs.get(key) else {
            return false;
        };
        let Some(t) = wf.position(&exp.template) else {
            return false;
        };
        if step.status(self, key, t) != Some(TaskStatus::Pending)
            || exp
                .members
                .iter()
                .any(|m| wf.position(&m.task_id).is_some())
        {
            return false;
        }
        let base = wf.tasks.len() + step.added_to(key);
        let total = base + exp.members.len();
        if total > self.settings.max_tasks {
            let error = GzError::new(
                ErrorCode::TooLarge,
                format!(
                    "task {}: its {} items would make the workflow {total} tasks, more than this queue-manager's --max-workflow-tasks {}",
                    exp.template,
                    exp.members.len(),
                    self.settings.max_tasks
                ),
            )
            .with_hint("lower `batch.max_items`, split the list, or raise --max-workflow-tasks");
            if let Some(r) = self.transition(step, key, t, TaskStatus::Failed, now) {
                r.error = serde_json::to_value(&error).ok();
            }
            // The resolver holds the template as expanded: it must learn it failed.
            return true;
        }
        let template = wf.tasks[t].clone();
        for (k, member) in exp.members.into_iter().enumerate() {
            let failed = member.error.is_some();
            let task_id: Arc<str> = member.task_id.into();
            let record = TaskRecord {
                name: sharing::member_name(&task_id, member.name),
                task_id,
                status: if failed {
                    TaskStatus::Failed
                } else {
                    TaskStatus::Queued
                },
                attempts: 0,
                params: member.params,
                result: None,
                error: member.error.and_then(|e| serde_json::to_value(e).ok()),
                provider_id: None,
                queued_at: (!failed).then_some(now.ms),
                started_at: None,
                finished_at: failed.then_some(now.ms),
                ..template.clone()
            };
            step.add_task(key, base + k, record, wf.info[t].for_member());
        }
        if let Some(r) = step.edit_workflow(self, key) {
            r.total_tasks = total as u64;
        }
        false
    }

    /// A template whose members all completed completes with their joined results.
    pub(super) fn join_into(&self, step: &mut Step, key: &WfKey, joined: JoinedTask, now: Now) {
        let Some(t) = self
            .wfs
            .get(key)
            .and_then(|wf| wf.position(&joined.task_id))
        else {
            return;
        };
        if let Some(r) = self.transition(step, key, t, TaskStatus::Completed, now) {
            r.result = Some(joined.result);
        }
    }
}

/// What the machine keeps for the tasks of a stored workflow that a fan-out added (past
/// the spec's own tasks): their template's settings. `None` when a task is neither the
/// spec's nor a member of one of its templates.
pub(crate) fn member_infos(spec: &WorkflowSpec, extra: &[TaskRecord]) -> Option<Vec<TaskInfo>> {
    let templates = gleitzeit_workflow::fanout::Templates::of(spec);
    extra
        .iter()
        .map(|t| {
            let template = templates.template_of(&t.task_id)?;
            Some(TaskInfo::new(&spec.tasks[template]).for_member())
        })
        .collect()
}
