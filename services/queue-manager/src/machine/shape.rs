//! What the machine keeps of a workflow's spec ([`Shape`]): each task's scheduling
//! settings and the workflow's own. It is taken before the task records are made, so that a
//! submission can let go of the spec as a tree (for 100,000 tasks tens of megabytes) before
//! it builds the records and stores them, instead of holding both at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_store::TaskRecord;
use gleitzeit_workflow::{OnFailure, WorkflowSpec};

use super::{fanout, TaskInfo};

/// A workflow's spec as the machine keeps it.
#[derive(Debug)]
pub(crate) struct Shape {
    /// One per task: the spec's own, then the members its fan-outs made.
    pub(super) info: Vec<TaskInfo>,
    pub(super) on_failure: OnFailure,
    /// How long the whole workflow may run.
    pub(super) timeout: Option<Duration>,
    /// The contents of the files its tasks name, by digest.
    pub(super) attachments: HashMap<String, Arc<str>>,
}

impl Shape {
    /// The shape of `spec`, whose stored workflow has `extra` tasks past the spec's own
    /// (made by its fan-outs; none for a new workflow). `None` when one of them is not a
    /// member of one of the spec's fan-outs.
    pub(crate) fn of(spec: &WorkflowSpec, extra: &[TaskRecord]) -> Option<Shape> {
        let mut info: Vec<TaskInfo> = spec.tasks.iter().map(TaskInfo::new).collect();
        info.extend(fanout::member_infos(spec, extra)?);
        let group = gleitzeit_workflow::batch::members(spec);
        if let Some((_, members, true)) = &group {
            for &m in members {
                info[m].fail_fast = true;
            }
        }
        // In a workflow without fan-outs or a batch, the resolver needs to hear only of the
        // ends of tasks others depend on.
        if group.is_none() && spec.tasks.iter().all(|t| t.batch.is_none()) {
            let dag = gleitzeit_workflow::Dag::from_spec(spec);
            for (i, info) in info.iter_mut().enumerate().take(dag.len()) {
                info.awaited = !dag.dependents(i).is_empty();
                info.dependents = u16::try_from(dag.dependents(i).len()).unwrap_or(0);
            }
        }
        Some(Shape {
            info,
            on_failure: spec.on_failure,
            timeout: spec.timeout_duration(),
            attachments: spec
                .attachments
                .iter()
                .map(|(key, a)| (key.clone(), Arc::from(a.content.as_str())))
                .collect(),
        })
    }
}
