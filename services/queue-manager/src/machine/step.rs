//! A proposed step of the life cycle: new task and workflow records (stored together in one
//! transaction), the queue entries and lease requests it took (given back on abort), and
//! the replies that go out once it is stored.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::envelope::now_millis;
use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::payloads::{FinishedTask, TaskRef};
use gleitzeit_protocol::Envelope;
use gleitzeit_store::{TaskRecord, TaskStatus, WorkflowRecord};
use tokio::time::Instant;

use super::leases::Waiting;
use super::{Counts, Machine, TaskInfo, Wf, WfKey};
use crate::queue::Entry;

/// The time an operation happens at: monotonic for deadlines, wall clock for records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// Monotonic (paused in tests).
    pub(crate) at: Instant,
    /// Milliseconds since the Unix epoch.
    pub(crate) ms: u64,
}

impl Now {
    /// The current time.
    pub(crate) fn current() -> Now {
        Now {
            at: Instant::now(),
            ms: now_millis(),
        }
    }
}

/// What a committed step sends.
#[derive(Debug)]
pub(crate) enum Effect {
    /// A workflow or task event to the rooms `events` and `workflow:<id>`.
    Event {
        wf: WfKey,
        event: &'static str,
        /// The payload, numbered (`seq`) when the event log takes it.
        payload: super::EventPayload,
    },
    /// The answer to a request (a lease).
    Reply {
        to: Box<Envelope>,
        /// The reply's data, already JSON.
        result: Result<Box<serde_json::value::RawValue>, GzError>,
    },
    /// Stop running work on an engine.
    CancelTasks {
        engine: Arc<str>,
        tasks: Vec<TaskRef>,
    },
    /// Tell the workflow's resolver what finished.
    TellResolver {
        wf: WfKey,
        finished: Vec<FinishedTask>,
    },
    /// The workflow finished (its final record is stored and announced): release it.
    Finished { wf: WfKey },
}

/// Where a proposed task record belongs, and what goes with it besides the record.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) wf: WfKey,
    pub(crate) i: usize,
    /// The engine a running task goes to.
    pub(crate) engine: Option<Arc<str>>,
    /// When a retrying task is queued again.
    pub(crate) retry_after: Option<Duration>,
}

/// A proposed step (see the module docs of `machine`).
#[derive(Debug)]
pub(crate) struct Step {
    pub(super) tasks: Vec<TaskRecord>,
    pub(super) changes: Vec<Change>,
    slot: HashMap<(WfKey, usize), usize>,
    pub(super) workflows: Vec<WorkflowRecord>,
    wf_slot: HashMap<WfKey, usize>,
    /// Queue entries taken (method, entry).
    pub(super) taken: Vec<(String, Entry)>,
    /// Lease requests answered.
    pub(super) served: Vec<Waiting>,
    /// Replies and messages to send once stored.
    pub(super) effects: Vec<Effect>,
    /// Replies to send whether or not the step is stored (empty lease answers).
    pub(super) immediate: Vec<Effect>,
    /// Tell resolvers about tasks that finished (not when the resolver decided them).
    pub(super) tell_resolver: bool,
    /// The resolver's answer to this workflow's plan: the ends kept back until it came
    /// are told with the step (`primed.rs`).
    pub(super) answered: Option<WfKey>,
    /// Tasks a fan-out adds (their records are in `tasks`, at positions past the
    /// workflow's tasks): what the machine keeps besides the record, and the record they
    /// start from (pending) when the step is committed.
    pub(super) added: Vec<Added>,
    /// Where each added task is in `added`, and how many each workflow gets.
    added_at: HashMap<(WfKey, usize), usize>,
    added_per_wf: HashMap<WfKey, usize>,
}

/// A task a step adds to a workflow (a fan-out's member).
#[derive(Debug)]
pub(crate) struct Added {
    pub(super) wf: WfKey,
    pub(super) i: usize,
    pub(super) info: TaskInfo,
    pub(super) pending: TaskRecord,
}

impl Default for Step {
    fn default() -> Self {
        Step {
            tasks: Vec::new(),
            changes: Vec::new(),
            slot: HashMap::new(),
            workflows: Vec::new(),
            wf_slot: HashMap::new(),
            taken: Vec::new(),
            served: Vec::new(),
            effects: Vec::new(),
            immediate: Vec::new(),
            tell_resolver: true,
            answered: None,
            added: Vec::new(),
            added_at: HashMap::new(),
            added_per_wf: HashMap::new(),
        }
    }
}

impl Step {
    /// True when there is nothing to store.
    pub(crate) fn nothing_to_store(&self) -> bool {
        self.tasks.is_empty() && self.workflows.is_empty()
    }

    /// True when there is nothing to store, give back or send.
    pub(crate) fn is_empty(&self) -> bool {
        self.nothing_to_store()
            && self.added.is_empty()
            && self.effects.is_empty()
            && self.immediate.is_empty()
            && self.taken.is_empty()
            && self.served.is_empty()
            && self.answered.is_none()
    }

    /// The records to store: workflows, tasks.
    pub(crate) fn records(&self) -> (&[WorkflowRecord], &[TaskRecord]) {
        (&self.workflows, &self.tasks)
    }

    /// Proposed task records (tests).
    #[cfg(test)]
    pub(crate) fn task_records(&self) -> &[TaskRecord] {
        &self.tasks
    }

    /// Proposed workflow records (tests).
    #[cfg(test)]
    pub(crate) fn workflow_records(&self) -> &[WorkflowRecord] {
        &self.workflows
    }

    /// A task's record as this step leaves it.
    pub(crate) fn record<'a>(
        &'a self,
        m: &'a Machine,
        wf: &WfKey,
        i: usize,
    ) -> Option<&'a TaskRecord> {
        match self.slot.get(&(wf.clone(), i)) {
            Some(&s) => self.tasks.get(s),
            None => m.wfs.get(wf)?.tasks.get(i),
        }
    }

    /// A task's status as this step leaves it.
    pub(crate) fn status(&self, m: &Machine, wf: &WfKey, i: usize) -> Option<TaskStatus> {
        match self.slot.get(&(wf.clone(), i)) {
            Some(&s) => Some(self.tasks[s].status),
            None => m.wfs.get(wf)?.tasks.get(i).map(|t| t.status),
        }
    }

    /// The proposed record of a task, copied from the machine on first use.
    pub(super) fn edit(&mut self, m: &Machine, wf: &WfKey, i: usize) -> Option<&mut TaskRecord> {
        let s = match self.slot.get(&(wf.clone(), i)) {
            Some(&s) => s,
            None => {
                let record = m.wfs.get(wf)?.tasks.get(i)?.clone();
                self.propose(wf, i, record)
            }
        };
        self.tasks.get_mut(s)
    }

    /// Takes `record` as the proposed record of task `i` of `wf`; returns its slot.
    fn propose(&mut self, wf: &WfKey, i: usize, record: TaskRecord) -> usize {
        self.tasks.push(record);
        self.changes.push(Change {
            wf: wf.clone(),
            i,
            engine: None,
            retry_after: None,
        });
        self.slot.insert((wf.clone(), i), self.tasks.len() - 1);
        self.tasks.len() - 1
    }

    /// Adds task `record` as task `i` of workflow `wf` (the next position: after the
    /// workflow's tasks and those this step added before). Its status is the one it
    /// enters with, from `pending`.
    pub(super) fn add_task(&mut self, wf: &WfKey, i: usize, record: TaskRecord, info: TaskInfo) {
        let pending = TaskRecord {
            status: TaskStatus::Pending,
            params: None,
            error: None,
            queued_at: None,
            finished_at: None,
            ..record.clone()
        };
        self.propose(wf, i, record);
        self.added_at.insert((wf.clone(), i), self.added.len());
        *self.added_per_wf.entry(wf.clone()).or_default() += 1;
        self.added.push(Added {
            wf: wf.clone(),
            i,
            info,
            pending,
        });
    }

    /// What the machine will keep for task `i` of `wf`, when this step adds it.
    pub(super) fn added_info(&self, wf: &WfKey, i: usize) -> Option<&TaskInfo> {
        let &at = self.added_at.get(&(wf.clone(), i))?;
        self.added.get(at).map(|a| &a.info)
    }

    /// How many tasks this step adds to `wf`.
    pub(super) fn added_to(&self, wf: &WfKey) -> usize {
        self.added_per_wf.get(wf).copied().unwrap_or(0)
    }

    /// Sets what goes with a task's proposed record.
    pub(super) fn change(&mut self, wf: &WfKey, i: usize) -> Option<&mut Change> {
        let s = *self.slot.get(&(wf.clone(), i))?;
        self.changes.get_mut(s)
    }

    /// The proposed record of a workflow, copied from the machine on first use.
    pub(super) fn edit_workflow(&mut self, m: &Machine, wf: &WfKey) -> Option<&mut WorkflowRecord> {
        let s = match self.wf_slot.get(wf) {
            Some(&s) => s,
            None => {
                let record = m.wfs.get(wf)?.record.clone();
                self.workflows.push(record);
                self.wf_slot.insert(wf.clone(), self.workflows.len() - 1);
                self.workflows.len() - 1
            }
        };
        self.workflows.get_mut(s)
    }

    /// Whether the step leaves workflow `wf` finished.
    pub(super) fn workflow_is_final(&self, m: &Machine, wf: &WfKey) -> bool {
        match self.wf_slot.get(wf) {
            Some(&s) => self.workflows[s].status.is_terminal(),
            None => m.wfs.get(wf).is_some_and(|w| w.record.status.is_terminal()),
        }
    }

    /// Workflows whose tasks the step changes, in first-touched order.
    pub(super) fn touched_workflows(&self) -> Vec<WfKey> {
        let mut out: Vec<WfKey> = Vec::new();
        for c in &self.changes {
            if !out.contains(&c.wf) {
                out.push(c.wf.clone());
            }
        }
        out
    }

    /// Whether a task of `wf` moves to `status` in this step.
    pub(super) fn moves_to(&self, wf: &WfKey, status: TaskStatus) -> bool {
        self.changes
            .iter()
            .zip(&self.tasks)
            .any(|(c, t)| &c.wf == wf && t.status == status)
    }

    /// Every task this step leaves in `status` (workflow, position), in the order the step
    /// first touched them.
    pub(super) fn left_in(&self, status: TaskStatus) -> Vec<(WfKey, usize)> {
        self.changes
            .iter()
            .zip(&self.tasks)
            .filter(|(_, t)| t.status == status)
            .map(|(c, _)| (c.wf.clone(), c.i))
            .collect()
    }

    /// Tasks of `wf` this step fails.
    pub(super) fn failed_in<'a>(&'a self, wf: &'a WfKey) -> impl Iterator<Item = usize> + 'a {
        self.changes
            .iter()
            .zip(&self.tasks)
            .filter(move |(c, t)| &c.wf == wf && t.status == TaskStatus::Failed)
            .map(|(c, _)| c.i)
    }

    /// The workflow's task counts as this step leaves them.
    pub(super) fn counts_after(&self, wf: &Wf, key: &WfKey) -> Counts {
        let mut counts = wf.counts;
        for (c, t) in self.changes.iter().zip(&self.tasks) {
            if &c.wf == key {
                match wf.tasks.get(c.i) {
                    Some(old) => counts.moved(old.status, t.status),
                    // A task the step adds.
                    None => counts.add(t.status),
                }
            }
        }
        counts
    }
}
