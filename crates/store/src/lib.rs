//! gleitzeit-store: persistence of Gleitzeit workflows and their tasks.
//!
//! - [`Store`] is the backend-neutral, synchronous interface. It is `Send + Sync` and meant
//!   to be called from blocking threads (e.g. `tokio::task::spawn_blocking`) through an
//!   `Arc<dyn Store>`.
//! - [`SqliteStore`] is the embedded implementation: one SQLite file in WAL mode.
//! - [`RedisStore`] keeps the same records on a Redis server (7.0 or newer), for
//!   deployments that already run one; see [`redis`] for its key layout.
//! - [`WorkflowRecord`] and [`TaskRecord`] are the stored rows; [`StoreError`] is every
//!   failure (protocol code `GZ1001` when Redis cannot be reached, else `GZ5001`).
//!
//! ```
//! use gleitzeit_store::{
//!     JsonText, SqliteStore, Store, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus,
//! };
//! use serde_json::json;
//!
//! let store = SqliteStore::open_in_memory()?;
//! let wf = WorkflowRecord {
//!     id: "wf-1".into(),
//!     name: "hello".into(),
//!     status: WorkflowStatus::Pending,
//!     spec: JsonText::of(&json!({ "name": "hello", "tasks": [{ "id": "ask" }] }))?,
//!     base_dir: None,
//!     total_tasks: 1,
//!     created_at: 1_700_000_000_000,
//!     started_at: None,
//!     finished_at: None,
//!     error: None,
//!     owner: Some("alice".into()),
//! };
//! let mut task = TaskRecord {
//!     workflow_id: "wf-1".into(),
//!     task_id: "ask".into(),
//!     name: "ask".into(),
//!     method: "llm/generate".into(),
//!     status: TaskStatus::Pending,
//!     priority: 0,
//!     attempts: 0,
//!     params: None,
//!     result: None,
//!     error: None,
//!     provider_id: None,
//!     queued_at: None,
//!     started_at: None,
//!     finished_at: None,
//! };
//! store.create_workflow(&wf, std::slice::from_ref(&task))?;
//!
//! task.status = TaskStatus::Completed;
//! task.result = Some(JsonText::of(&json!({ "response": "blue" }))?);
//! store.apply(&[], &[task])?;
//!
//! let stored = store.task(None, "ask")?.expect("stored");
//! assert_eq!(stored.status, TaskStatus::Completed);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod error;
pub mod idempotency;
pub mod model;
pub mod redis;
pub mod sqlite;

pub use crate::redis::RedisStore;
pub use error::{BackendError, StoreError};
pub use idempotency::{Creation, Idempotency, KeptSubmission};
pub use model::{
    JsonText, ParseStatusError, StoreInfo, TaskRecord, TaskStatus, WorkflowRecord, WorkflowStatus,
};
pub use sqlite::SqliteStore;

/// Refuses tasks given to be created with workflow `wf` that belong to another workflow.
pub(crate) fn tasks_belong_to(wf: &WorkflowRecord, tasks: &[TaskRecord]) -> Result<(), StoreError> {
    match tasks.iter().find(|t| *t.workflow_id != *wf.id) {
        Some(task) => Err(StoreError::Invalid(format!(
            "task `{}` belongs to workflow `{}`, not `{}`",
            task.task_id, task.workflow_id, wf.id
        ))),
        None => Ok(()),
    }
}

/// One page of a workflow's tasks read in full (stores without a cheaper way): at most
/// `limit` from position `offset` among those of `status`, if given.
pub(crate) fn page_of_all(
    tasks: Vec<TaskRecord>,
    status: Option<TaskStatus>,
    offset: usize,
    limit: usize,
) -> Vec<TaskRecord> {
    tasks
        .into_iter()
        .filter(|t| status.is_none_or(|s| t.status == s))
        .skip(offset)
        .take(limit)
        .collect()
}

/// Persistence of workflows and their tasks.
///
/// Every method is synchronous and may block on disk or network I/O: call it from a
/// blocking thread, never directly on an async executor. Implementations are `Send + Sync`
/// and serialize concurrent calls themselves.
///
/// Tasks are identified by `(workflow_id, task_id)`; each workflow's tasks keep the order
/// in which they were first stored.
pub trait Store: Send + Sync {
    /// Stores a new workflow with all its tasks, in one transaction: afterwards either all
    /// of them are stored or none.
    ///
    /// Fails with [`StoreError::AlreadyExists`] if a workflow with the same id is stored, and
    /// with [`StoreError::Invalid`] if a task's `workflow_id` differs from `wf.id` or two
    /// tasks share a `task_id`.
    fn create_workflow(&self, wf: &WorkflowRecord, tasks: &[TaskRecord]) -> Result<(), StoreError>;

    /// [`Store::create_workflow`] under an idempotency key ([`idempotency`]), in the same
    /// transaction: when the key is not kept yet, the workflow, its tasks and the key are
    /// stored together ([`Creation::Created`]); when it is kept with the same fingerprint,
    /// nothing is written and the first workflow's id is returned ([`Creation::Existing`]);
    /// with another fingerprint the call fails with [`StoreError::IdempotencyConflict`].
    /// Two concurrent calls with one key create one workflow.
    fn create_workflow_once(
        &self,
        idempotency: &Idempotency<'_>,
        wf: &WorkflowRecord,
        tasks: &[TaskRecord],
    ) -> Result<Creation, StoreError>;

    /// The submission kept under an idempotency key, if any.
    fn kept_submission(&self, key: &str) -> Result<Option<KeptSubmission>, StoreError>;

    /// Applies a batch of changes atomically (one transaction): workflow rows replaced, task
    /// rows upserted.
    ///
    /// Workflows are written before tasks, so a batch may add a workflow and its tasks. A
    /// workflow whose `spec` is `Value::Null` keeps its stored spec (records returned by
    /// [`Store::list_workflows`] can be written back, and status updates need not carry a
    /// megabyte spec). An upserted task keeps its original position in [`Store::tasks`].
    /// Fails with [`StoreError::UnknownWorkflow`] if a task's workflow is not stored; then
    /// nothing of the batch is applied.
    fn apply(&self, workflows: &[WorkflowRecord], tasks: &[TaskRecord]) -> Result<(), StoreError>;

    /// The workflow with this id, including its spec, or `None`.
    fn workflow(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError>;

    /// All tasks of a workflow, in insertion order (empty if the workflow is unknown).
    fn tasks(&self, workflow_id: &str) -> Result<Vec<TaskRecord>, StoreError>;

    /// The workflow with this id without its spec (`spec` is [`JsonText::null`]), or `None`:
    /// what a status read needs, without loading a spec that can be megabytes.
    fn workflow_head(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        Ok(self.workflow(id)?.map(|mut w| {
            w.spec = JsonText::null();
            w
        }))
    }

    /// How many tasks of a workflow have each status (statuses with none left out), without
    /// loading the tasks' parameters and results.
    fn task_counts(&self, workflow_id: &str) -> Result<Vec<(TaskStatus, usize)>, StoreError> {
        let mut counts: Vec<(TaskStatus, usize)> = Vec::new();
        for t in self.tasks(workflow_id)? {
            match counts.iter_mut().find(|(s, _)| *s == t.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((t.status, 1)),
            }
        }
        Ok(counts)
    }

    /// One page of a workflow's tasks in insertion order: at most `limit` of them from
    /// position `offset`, counting only those of `status` when it is given (what a paged
    /// `workflow_get` reads, without loading every task of a big workflow).
    fn tasks_page(
        &self,
        workflow_id: &str,
        status: Option<TaskStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        Ok(page_of_all(self.tasks(workflow_id)?, status, offset, limit))
    }

    /// A task by id; workflow_id None = search all workflows (most recent workflow first).
    fn task(
        &self,
        workflow_id: Option<&str>,
        task_id: &str,
    ) -> Result<Option<TaskRecord>, StoreError>;

    /// Most recent first; `status` filter optional. Must NOT load the `spec` column for listing
    /// (return spec = Value::Null in listed records): specs can be megabytes.
    ///
    /// At most `limit` records are returned (`usize::MAX` for all). Workflows created in the
    /// same millisecond are listed in reverse insertion order.
    fn list_workflows(
        &self,
        limit: usize,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<WorkflowRecord>, StoreError>;

    /// Workflows whose status is Pending or Running (for recovery after restart), with spec.
    ///
    /// Oldest first, so that recovery resumes workflows in submission order.
    fn unfinished_workflows(&self) -> Result<Vec<WorkflowRecord>, StoreError>;
    /// The backend's kind and location, and whether it answers a trivial query right now.
    fn info(&self) -> StoreInfo;

    /// Ids of unfinished workflows (Pending or Running), oldest first, without their specs.
    fn unfinished_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .unfinished_workflows()?
            .into_iter()
            .map(|w| w.id)
            .collect())
    }

    /// Takes or renews ownership of a workflow for `ttl` on behalf of `owner` (a
    /// queue-manager's id): true when `owner` holds it afterwards. Only the owner dispatches
    /// a workflow's tasks, so several queue-managers can share one store; a workflow whose
    /// owner stopped renewing is taken over by another. A store used by one process only
    /// (the embedded one) always grants it.
    fn claim(
        &self,
        workflow_id: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let _ = (workflow_id, owner, ttl);
        Ok(true)
    }

    /// The current owner of a workflow, if any (None for single-process stores).
    fn owner(&self, workflow_id: &str) -> Result<Option<String>, StoreError> {
        let _ = workflow_id;
        Ok(None)
    }

    /// Marks a stored workflow that cannot be loaded (its row, spec or tasks are unreadable
    /// or out of range) as failed with `error`, finished at `finished_at` (ms), without
    /// reading it: recovery skips such a workflow instead of failing on it at every start.
    ///
    /// The default writes a minimal failed record (name = id, no tasks counted) over the
    /// unreadable one, keeping its stored spec; backends that can update the status alone
    /// do so.
    fn mark_unloadable(
        &self,
        workflow_id: &str,
        error: &serde_json::Value,
        finished_at: u64,
    ) -> Result<(), StoreError> {
        let record = WorkflowRecord {
            id: workflow_id.to_string(),
            name: workflow_id.to_string(),
            status: WorkflowStatus::Failed,
            spec: JsonText::null(),
            base_dir: None,
            total_tasks: 0,
            created_at: finished_at,
            started_at: None,
            finished_at: Some(finished_at),
            error: Some(error.clone()),
            owner: None,
        };
        self.apply(std::slice::from_ref(&record), &[])
    }

    /// Gives ownership of a workflow up (it finished).
    fn release(&self, workflow_id: &str, owner: &str) -> Result<(), StoreError> {
        let _ = (workflow_id, owner);
        Ok(())
    }
}
