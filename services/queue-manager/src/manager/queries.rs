//! Reads: a workflow with its tasks and counts, a list of workflows (a user's own unless
//! their role reads all), one task, the events after a sequence number, the owner of a
//! workflow (asked by the hub for room joins). Workflows in memory are answered from
//! memory, others from the store.

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{ListWorkflows, TaskLookup, WorkflowRef};
use gleitzeit_protocol::replies::{OwnerReply, WorkflowDetail};
use gleitzeit_protocol::requests::WorkflowEventsQuery;
use gleitzeit_protocol::Envelope;
use gleitzeit_store::{JsonText, TaskRecord, WorkflowRecord, WorkflowStatus};
use serde::Serialize;
use serde_json::{json, Value};

use super::ownership::{sees_all, Access};
use super::Manager;
use crate::events_log::Kept;
use crate::machine::Counts;

/// A workflow record for replies: everything but the (possibly huge) spec.
fn record_without_spec(r: &WorkflowRecord) -> WorkflowRecord {
    WorkflowRecord {
        spec: JsonText::null(),
        ..r.clone()
    }
}

/// A page of tasks read with one task more than `limit` asked for: the page, and where the
/// next one starts when that extra task shows that more follow.
fn page_of(
    mut tasks: Vec<TaskRecord>,
    offset: usize,
    limit: Option<usize>,
) -> (Vec<TaskRecord>, Option<usize>) {
    match limit {
        Some(l) if tasks.len() > l => {
            tasks.truncate(l);
            (tasks, Some(offset + l))
        }
        _ => (tasks, None),
    }
}

/// The reply to `workflow_events` (a `WorkflowEventsReply`), written from the event log's
/// texts: a catch-up of a big run's first events holds thousands of them.
#[derive(Serialize)]
pub(super) struct EventsSince {
    workflow_id: String,
    events: Vec<Kept>,
    complete: bool,
}

impl Manager {
    /// `workflow_get`: the workflow and its counts, and every task, one page of them
    /// (`offset`, `limit`, `status`), or none (`summary`). Serialized by the caller straight
    /// to text: a 100,000-task reply as a tree of values took ~700 MB.
    pub(super) async fn get(
        &mut self,
        env: &Envelope,
        r: WorkflowRef,
    ) -> Result<WorkflowDetail, GzError> {
        self.check_access(env, &r.workflow_id, Access::Read).await?;
        let limit = r.page_limit();
        if let Some(wf) = self.machine.workflow(&r.workflow_id) {
            // A big workflow's ended tasks have their data in the store only: the task list
            // comes from there (every change is stored before it shows here, so the store
            // is as new as memory).
            if r.summary || !wf.keeps_results_in_store() {
                let (tasks, next_offset) = if r.summary {
                    (Vec::new(), None)
                } else {
                    let fits = |t: &&TaskRecord| r.status.is_none_or(|s| t.status == s);
                    let page = wf.tasks.iter().filter(fits).skip(r.offset);
                    page_of(
                        page.take(limit.map_or(usize::MAX, |l| l + 1))
                            .cloned()
                            .collect(),
                        r.offset,
                        limit,
                    )
                };
                return Ok(WorkflowDetail {
                    workflow: record_without_spec(&wf.record),
                    counts: wf.counts.as_map(),
                    tasks,
                    next_offset,
                });
            }
        }
        let id = r.workflow_id.clone();
        let (summary, status, offset) = (r.summary, r.status, r.offset);
        // Neither a summary nor a read of tasks loads the spec (a status poll of a finished
        // 100,000-task workflow loaded it), and the counts come from the store's index.
        let found = self
            .persistence
            .call(move |s| {
                let Some(record) = s.workflow_head(&id)? else {
                    return Ok(None);
                };
                let mut counts = Counts::default();
                for (status, n) in s.task_counts(&id)? {
                    counts.add_many(status, n);
                }
                let tasks = match (summary, limit) {
                    (true, _) => Vec::new(),
                    (false, None) if status.is_none() && offset == 0 => s.tasks(&id)?,
                    (false, limit) => {
                        let take = limit.map_or(usize::MAX, |l| l + 1);
                        s.tasks_page(&id, status, offset, take)?
                    }
                };
                Ok(Some((record, counts, tasks)))
            })
            .await?;
        let Some((record, counts, tasks)) = found else {
            return Err(GzError::new(
                ErrorCode::WorkflowNotFound,
                format!("no workflow {}", r.workflow_id),
            ));
        };
        let (tasks, next_offset) = page_of(tasks, offset, limit);
        Ok(WorkflowDetail {
            workflow: record,
            counts: counts.as_map(),
            tasks,
            next_offset,
        })
    }

    pub(super) async fn list(
        &mut self,
        env: &Envelope,
        q: ListWorkflows,
    ) -> Result<Value, GzError> {
        let status = match q.status.as_deref() {
            Some(s) => Some(s.parse::<WorkflowStatus>().map_err(|_| {
                GzError::new(ErrorCode::InvalidField, format!("unknown status {s:?}"))
            })?),
            None => None,
        };
        let limit = q.limit.unwrap_or(20).clamp(1, 10_000);
        let own_only = env
            .auth
            .as_ref()
            .filter(|a| !sees_all(a))
            .map(|a| a.user.clone());
        // A user sees only their own workflows: read more and keep theirs.
        let fetch = if own_only.is_some() { 10_000 } else { limit };
        let mut list = self
            .persistence
            .call(move |s| s.list_workflows(fetch, status))
            .await?;
        if let Some(user) = own_only {
            list.retain(|w| w.owner.as_deref() == Some(user.as_str()));
            list.truncate(limit);
        }
        Ok(json!(list))
    }

    /// Events after a sequence number; `Ok(None)` when the request went on to the owner.
    pub(super) async fn events_since(
        &self,
        env: &Envelope,
        q: WorkflowEventsQuery,
    ) -> Result<Option<EventsSince>, GzError> {
        let id = q.workflow_id;
        self.check_access(env, &id, Access::Read).await?;
        if !self.publisher.log.knows(&id) && self.forward_to_owner(env).await {
            return Ok(None);
        }
        let (events, complete) = self
            .publisher
            .log
            .since(&id, q.after_seq)
            .unwrap_or((Vec::new(), false));
        Ok(Some(EventsSince {
            workflow_id: id,
            events,
            complete,
        }))
    }

    /// `workflow_owner` (asked by the hub): who submitted a workflow.
    pub(super) async fn owner_query(&self, r: WorkflowRef) -> Result<OwnerReply, GzError> {
        let owner = self.owner_of(&r.workflow_id).await?;
        Ok(OwnerReply {
            workflow_id: r.workflow_id,
            owner: owner.flatten(),
        })
    }

    pub(super) async fn task_get(
        &mut self,
        env: &Envelope,
        q: TaskLookup,
    ) -> Result<Value, GzError> {
        if let Some(w) = &q.workflow_id {
            if let Some(wf) = self.machine.workflow(w) {
                let held = wf.position(&q.task_id).filter(|&i| {
                    !(wf.keeps_results_in_store() && wf.tasks[i].status.is_terminal())
                });
                if let Some(i) = held {
                    let task = json!(wf.tasks[i]);
                    self.check_access(env, w, Access::Read).await?;
                    return Ok(task);
                }
            }
        }
        let (w, t) = (q.workflow_id.clone(), q.task_id.clone());
        match self
            .persistence
            .call(move |s| s.task(w.as_deref(), &t))
            .await?
        {
            Some(t) => {
                self.check_access(env, &t.workflow_id, Access::Read).await?;
                Ok(json!(t))
            }
            None => Err(GzError::new(
                ErrorCode::TaskNotFound,
                format!("no task {}", q.task_id),
            )),
        }
    }
}
