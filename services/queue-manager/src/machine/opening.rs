//! Tasks ready at a workflow's submission. A task that waits for no task, does not fan out
//! and whose parameters refer to nothing (`gleitzeit_workflow::text_parameters::ready_as_written`) is stored queued, with its
//! parameters as written, in the transaction that stores its workflow (stored running then),
//! and goes to an engine before any resolver has answered: a resolver would report it
//! ready with that very text. Its workflow's plan names such tasks as started, so the
//! resolver's first answer does not list them again, and the ends that come before that
//! answer are kept back and told with it ([`super::Wf::planned`], `primed.rs`).
//!
//! For 10,000 independent tasks this spares the run a write of every task (queued) after
//! the resolver's answer, and the wait for that answer (~50 ms together).

use gleitzeit_protocol::events;
use gleitzeit_store::{JsonText, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus};
use serde_json::value::RawValue;

use super::{payload, task_event, Effect, Machine, Now};

/// Makes a new task's record queued at `now`, with its parameters as written (for a task
/// ready as written).
pub(crate) fn open_task(record: &mut TaskRecord, params: Box<RawValue>, now: Now) {
    record.status = TaskStatus::Queued;
    record.queued_at = Some(now.ms);
    record.params = Some(JsonText::from_raw(params));
}

/// A new workflow with tasks queued at its submission is stored running.
pub(crate) fn open_workflow(record: &mut WorkflowRecord, now: Now) {
    record.status = WorkflowStatus::Running;
    record.started_at = Some(now.ms);
}

impl Machine {
    /// What a workflow taken in with tasks queued already announces: each such task's
    /// `task_queued`, then `workflow_started`, as the step queuing them would have (none
    /// when it has no queued task).
    pub(crate) fn opening(&self, id: &str) -> Vec<Effect> {
        let Some((key, wf)) = self.wfs.get_key_value(id) else {
            return Vec::new();
        };
        let mut effects: Vec<Effect> = (0..wf.tasks.len())
            .filter(|&i| wf.tasks[i].status == TaskStatus::Queued)
            .map(|i| Effect::Event {
                wf: key.clone(),
                event: events::TASK_QUEUED,
                payload: task_event(key, wf, i),
            })
            .collect();
        if !effects.is_empty() {
            effects.push(Effect::Event {
                wf: key.clone(),
                event: events::WORKFLOW_STARTED,
                payload: payload(wf.progress()).into(),
            });
        }
        effects
    }
}
