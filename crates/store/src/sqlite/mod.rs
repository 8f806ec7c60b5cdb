//! [`SqliteStore`]: the embedded [`Store`] on one SQLite file.
//!
//! Layout (schema version 1, recorded in the `schema_version` table):
//!
//! - `workflows`: one small row per workflow, indexed by `created_at` and by
//!   `(status, created_at)` for listing.
//! - `workflow_specs`: the spec JSON of each workflow, kept apart so that listing and status
//!   updates never read or rewrite a multi-megabyte spec. It is written in place as a blob
//!   of UTF-8 bytes (a `zeroblob` of its length, then the bytes): bound as text, SQLite
//!   made two copies of it. Specs stored as text by earlier versions read the same.
//! - `tasks`: one row per task; `seq` (the rowid) is an insertion counter, and the index on
//!   `(workflow_id, seq)` returns a workflow's tasks in insertion order. A unique index on
//!   `(workflow_id, task_id)` backs upserts and an index on `task_id` backs lookups across
//!   workflows.
//!
//! JSON values are stored as TEXT, statuses as their snake_case names, times as INTEGER
//! milliseconds. File databases use WAL with `synchronous = NORMAL` and a 5 s busy timeout.
//! One connection behind a mutex serves all callers; every write is one `IMMEDIATE`
//! transaction with cached prepared statements. WAL checkpoints run on a background thread
//! with a second connection, so that commits do not wait for them.

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::types::FromSql;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};
use serde_json::Value;

use crate::{
    Creation, Idempotency, JsonText, KeptSubmission, Store, StoreError, StoreInfo, TaskRecord,
    TaskStatus, WorkflowRecord, WorkflowStatus,
};

/// The schema version this build writes and understands.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS workflows (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL,
    base_dir    TEXT,
    total_tasks INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER,
    error       TEXT,
    owner       TEXT
);
CREATE INDEX IF NOT EXISTS workflows_by_created ON workflows (created_at);
CREATE INDEX IF NOT EXISTS workflows_by_status ON workflows (status, created_at);
CREATE TABLE IF NOT EXISTS workflow_specs (
    workflow_id TEXT PRIMARY KEY NOT NULL,
    spec        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tasks (
    seq         INTEGER PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    method      TEXT NOT NULL,
    status      TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    params      TEXT,
    result      TEXT,
    error       TEXT,
    provider_id TEXT,
    queued_at   INTEGER,
    started_at  INTEGER,
    finished_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS tasks_by_id ON tasks (workflow_id, task_id);
CREATE INDEX IF NOT EXISTS tasks_by_seq ON tasks (workflow_id, seq);
CREATE INDEX IF NOT EXISTS tasks_by_task_id ON tasks (task_id);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key         TEXT PRIMARY KEY NOT NULL,
    workflow_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
";

/// Workflow columns without the spec, in the order [`read_workflow`] expects; `w` is the
/// `workflows` table.
const WORKFLOW_COLUMNS: &str = "w.id, w.name, w.status, w.base_dir, w.total_tasks, \
     w.created_at, w.started_at, w.finished_at, w.error, w.owner";

/// Task columns in the order [`read_task`] expects; `t` is the `tasks` table.
const TASK_COLUMNS: &str = "t.workflow_id, t.task_id, t.name, t.method, t.status, \
     t.priority, t.attempts, t.params, t.result, t.error, t.provider_id, t.queued_at, \
     t.started_at, t.finished_at";

const INSERT_WORKFLOW: &str = "INSERT INTO workflows \
     (id, name, status, base_dir, total_tasks, created_at, started_at, finished_at, error, \
     owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

const UPSERT_WORKFLOW: &str = "INSERT INTO workflows \
     (id, name, status, base_dir, total_tasks, created_at, started_at, finished_at, error, \
     owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
     ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, \
     base_dir = excluded.base_dir, total_tasks = excluded.total_tasks, \
     created_at = excluded.created_at, started_at = excluded.started_at, \
     finished_at = excluded.finished_at, error = excluded.error, \
     owner = COALESCE(excluded.owner, workflows.owner)";

/// Makes room for a spec (`zeroblob`, never built in memory) that is then written into it
/// in place: binding a 28 MB spec as text had SQLite copy it twice.
const UPSERT_SPEC_ROOM: &str = "INSERT INTO workflow_specs (workflow_id, spec) \
     VALUES (?1, zeroblob(?2)) \
     ON CONFLICT (workflow_id) DO UPDATE SET spec = excluded.spec RETURNING rowid";

const INSERT_TASK: &str = "INSERT INTO tasks \
     (workflow_id, task_id, name, method, status, priority, attempts, params, result, error, \
     provider_id, queued_at, started_at, finished_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

/// A task's row rewritten in place (the same columns as [`INSERT_TASK`]): a transition of a
/// task already stored, which is nearly every write after a workflow's creation (an upsert
/// first built the row to insert, found the conflict, then built it again); a task not
/// stored yet (a fan-out member made at run time) is inserted.
const UPDATE_TASK: &str = "UPDATE tasks SET name = ?3, method = ?4, status = ?5, \
     priority = ?6, attempts = ?7, params = ?8, result = ?9, error = ?10, provider_id = ?11, \
     queued_at = ?12, started_at = ?13, finished_at = ?14 \
     WHERE workflow_id = ?1 AND task_id = ?2";

const WORKFLOW_EXISTS: &str = "SELECT 1 FROM workflows WHERE id = ?1";

/// The embedded [`Store`]: a SQLite database file (or an in-memory database for tests).
///
/// Cheap to share as `Arc<SqliteStore>` / `Arc<dyn Store>`; calls are serialized on one
/// connection.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    location: String,
    /// Background WAL checkpoints; `None` for in-memory databases.
    checkpointer: Option<Checkpointer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database file at `path`, creating missing parent directories,
    /// switching to WAL with `synchronous = NORMAL` and a 5 s busy timeout, and creating the
    /// schema if needed.
    ///
    /// Fails with [`StoreError::UnsupportedSchema`] if the file was written by a newer
    /// schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|cause| StoreError::Io {
                path: parent.to_path_buf(),
                cause,
            })?;
        }
        let conn = Connection::open(path).map_err(|e| StoreError::backend("open", e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| StoreError::backend("set busy timeout", e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| StoreError::backend("enable WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite store is not in WAL mode");
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| StoreError::backend("set synchronous", e))?;
        // Checkpoints normally run on the checkpointer thread; this is only the backstop.
        conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES)
            .map_err(|e| StoreError::backend("set wal_autocheckpoint", e))?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(|e| StoreError::backend("set journal_size_limit", e))?;
        // Keeps the pages of a 100,000-task workflow cached (a limit, not an allocation).
        conn.pragma_update(None, "cache_size", PAGE_CACHE_KIB)
            .map_err(|e| StoreError::backend("set cache_size", e))?;
        let mut store = Self::init(conn, path.display().to_string())?;
        store.checkpointer = Some(Checkpointer::start(path)?);
        tracing::debug!(path = %path.display(), "opened SQLite store");
        Ok(store)
    }

    /// Opens a fresh in-memory database (for tests and throw-away runs); its data is gone
    /// when the store is dropped.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(|e| StoreError::backend("open", e))?;
        Self::init(conn, ":memory:".to_string())
    }

    /// Creates the schema (if missing) and checks its version.
    fn init(mut conn: Connection, location: String) -> Result<Self, StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| StoreError::backend("begin schema transaction", e))?;
        tx.execute_batch(SCHEMA)
            .map_err(|e| StoreError::backend("create schema", e))?;
        add_owner_column(&tx)?;
        let found: Option<i64> = tx
            .query_row("SELECT MAX(version) FROM schema_version", [], |row| {
                row.get(0)
            })
            .map_err(|e| StoreError::backend("read schema version", e))?;
        match found {
            None => {
                tx.execute(
                    "INSERT INTO schema_version (version) VALUES (?1)",
                    [SCHEMA_VERSION],
                )
                .map_err(|e| StoreError::backend("write schema version", e))?;
            }
            Some(found) if found > SCHEMA_VERSION => {
                return Err(StoreError::UnsupportedSchema {
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
        }
        tx.commit()
            .map_err(|e| StoreError::backend("commit schema", e))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            location,
            checkpointer: None,
        })
    }

    /// The connection. A panic in another caller cannot leave a transaction open (it is
    /// rolled back when dropped), so a poisoned lock is safe to reuse.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a new workflow, its tasks and (when given) its idempotency key in one
    /// transaction; a key already kept writes nothing.
    fn create(
        &self,
        idempotency: Option<&Idempotency<'_>>,
        wf: &WorkflowRecord,
        tasks: &[TaskRecord],
    ) -> Result<Creation, StoreError> {
        crate::tasks_belong_to(wf, tasks)?;
        let started = Instant::now();
        let mut conn = self.conn();
        let tx = begin(&mut conn)?;
        {
            if let Some(idem) = idempotency {
                if let Some(kept) = read_kept(&tx, idem.key)? {
                    return kept.resubmitted(idem.key, idem.fingerprint);
                }
            }
            let exists = tx
                .prepare_cached(WORKFLOW_EXISTS)
                .and_then(|mut stmt| stmt.exists([&wf.id]))
                .map_err(|e| StoreError::backend("look up workflow", e))?;
            if exists {
                return Err(StoreError::AlreadyExists { id: wf.id.clone() });
            }
            write_workflow(&tx, INSERT_WORKFLOW, wf)?;
            let mut stmt = tx
                .prepare_cached(INSERT_TASK)
                .map_err(|e| StoreError::backend("prepare insert task", e))?;
            for task in tasks {
                write_task(&mut stmt, task)?;
            }
            if let Some(idem) = idempotency {
                tx.execute(
                    "INSERT INTO idempotency_keys (key, workflow_id, fingerprint) VALUES (?1, ?2, ?3)",
                    params![idem.key, wf.id, idem.fingerprint],
                )
                .map_err(|e| StoreError::backend("insert idempotency key", e))?;
            }
        }
        tx.commit()
            .map_err(|e| StoreError::backend("commit workflow", e))?;
        drop(conn);
        self.committed();
        tracing::debug!(
            workflow_id = %wf.id,
            tasks = tasks.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "stored new workflow"
        );
        Ok(Creation::Created)
    }

    /// Tells the checkpointer that a write transaction committed.
    fn committed(&self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.nudge();
        }
    }
}

impl Store for SqliteStore {
    fn create_workflow(&self, wf: &WorkflowRecord, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        self.create(None, wf, tasks).map(|_| ())
    }

    fn create_workflow_once(
        &self,
        idempotency: &Idempotency<'_>,
        wf: &WorkflowRecord,
        tasks: &[TaskRecord],
    ) -> Result<Creation, StoreError> {
        self.create(Some(idempotency), wf, tasks)
    }

    fn kept_submission(&self, key: &str) -> Result<Option<KeptSubmission>, StoreError> {
        let conn = self.conn();
        read_kept(&conn, key)
    }

    fn apply(&self, workflows: &[WorkflowRecord], tasks: &[TaskRecord]) -> Result<(), StoreError> {
        if workflows.is_empty() && tasks.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = begin(&mut conn)?;
        {
            for wf in workflows {
                write_workflow(&tx, UPSERT_WORKFLOW, wf)?;
            }
            // Workflows already known to exist in this transaction.
            let mut known: HashSet<&str> = workflows.iter().map(|wf| wf.id.as_str()).collect();
            let mut exists = tx
                .prepare_cached(WORKFLOW_EXISTS)
                .map_err(|e| StoreError::backend("prepare workflow lookup", e))?;
            let mut update = tx
                .prepare_cached(UPDATE_TASK)
                .map_err(|e| StoreError::backend("prepare update task", e))?;
            let mut insert = tx
                .prepare_cached(INSERT_TASK)
                .map_err(|e| StoreError::backend("prepare insert task", e))?;
            for task in tasks {
                if write_task(&mut update, task)? == 1 {
                    continue;
                }
                if !known.contains(&*task.workflow_id) {
                    let found = exists
                        .exists([&task.workflow_id])
                        .map_err(|e| StoreError::backend("look up workflow", e))?;
                    if !found {
                        return Err(StoreError::UnknownWorkflow {
                            id: task.workflow_id.to_string(),
                        });
                    }
                    known.insert(&*task.workflow_id);
                }
                write_task(&mut insert, task)?;
            }
        }
        tx.commit()
            .map_err(|e| StoreError::backend("commit batch", e))?;
        drop(conn);
        self.committed();
        Ok(())
    }

    fn workflow(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {WORKFLOW_COLUMNS}, s.spec FROM workflows w \
                 LEFT JOIN workflow_specs s ON s.workflow_id = w.id WHERE w.id = ?1"
            ))
            .map_err(|e| StoreError::backend("prepare workflow query", e))?;
        let mut rows = stmt
            .query([id])
            .map_err(|e| StoreError::backend("query workflow", e))?;
        match next_row(&mut rows, "read workflow")? {
            Some(row) => read_workflow(row, true).map(Some),
            None => Ok(None),
        }
    }

    fn workflow_head(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {WORKFLOW_COLUMNS} FROM workflows w WHERE w.id = ?1"
            ))
            .map_err(|e| StoreError::backend("prepare workflow query", e))?;
        let mut rows = stmt
            .query([id])
            .map_err(|e| StoreError::backend("query workflow", e))?;
        match next_row(&mut rows, "read workflow")? {
            Some(row) => read_workflow(row, false).map(Some),
            None => Ok(None),
        }
    }

    fn task_counts(&self, workflow_id: &str) -> Result<Vec<(TaskStatus, usize)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT t.status, COUNT(*) FROM tasks t WHERE t.workflow_id = ?1 GROUP BY t.status",
            )
            .map_err(|e| StoreError::backend("prepare task counts", e))?;
        let mut rows = stmt
            .query([workflow_id])
            .map_err(|e| StoreError::backend("query task counts", e))?;
        let mut counts = Vec::new();
        while let Some(row) = next_row(&mut rows, "read task counts")? {
            let status: String = row
                .get(0)
                .map_err(|e| StoreError::backend("read task status", e))?;
            let n: i64 = row
                .get(1)
                .map_err(|e| StoreError::backend("read task count", e))?;
            let status = status.parse::<TaskStatus>().map_err(|_| {
                StoreError::Corrupt(format!(
                    "workflow `{workflow_id}`: unknown task status {status:?}"
                ))
            })?;
            counts.push((status, usize::try_from(n).unwrap_or(0)));
        }
        Ok(counts)
    }

    fn tasks(&self, workflow_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.workflow_id = ?1 ORDER BY t.seq"
            ))
            .map_err(|e| StoreError::backend("prepare tasks query", e))?;
        let mut rows = stmt
            .query([workflow_id])
            .map_err(|e| StoreError::backend("query tasks", e))?;
        let mut tasks = Vec::new();
        while let Some(row) = next_row(&mut rows, "read tasks")? {
            tasks.push(read_task(row)?);
        }
        Ok(tasks)
    }

    fn tasks_page(
        &self,
        workflow_id: &str,
        status: Option<TaskStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.workflow_id = ?1 \
                 AND (?2 IS NULL OR t.status = ?2) ORDER BY t.seq LIMIT ?3 OFFSET ?4"
            ))
            .map_err(|e| StoreError::backend("prepare task page query", e))?;
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let mut rows = stmt
            .query(params![
                workflow_id,
                status.map(|s| s.as_str()),
                to_i64(limit),
                to_i64(offset)
            ])
            .map_err(|e| StoreError::backend("query task page", e))?;
        let mut tasks = Vec::new();
        while let Some(row) = next_row(&mut rows, "read task page")? {
            tasks.push(read_task(row)?);
        }
        Ok(tasks)
    }

    fn task(
        &self,
        workflow_id: Option<&str>,
        task_id: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let conn = self.conn();
        let (sql, args): (String, Vec<&str>) = match workflow_id {
            Some(workflow_id) => (
                format!(
                    "SELECT {TASK_COLUMNS} FROM tasks t \
                     WHERE t.workflow_id = ?1 AND t.task_id = ?2"
                ),
                vec![workflow_id, task_id],
            ),
            None => (
                format!(
                    "SELECT {TASK_COLUMNS} FROM tasks t \
                     LEFT JOIN workflows w ON w.id = t.workflow_id WHERE t.task_id = ?1 \
                     ORDER BY w.created_at DESC, w.rowid DESC, t.seq DESC LIMIT 1"
                ),
                vec![task_id],
            ),
        };
        let mut stmt = conn
            .prepare_cached(&sql)
            .map_err(|e| StoreError::backend("prepare task query", e))?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(args))
            .map_err(|e| StoreError::backend("query task", e))?;
        match next_row(&mut rows, "read task")? {
            Some(row) => read_task(row).map(Some),
            None => Ok(None),
        }
    }

    fn list_workflows(
        &self,
        limit: usize,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<WorkflowRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let filter = if status.is_some() {
            "WHERE w.status = ?2"
        } else {
            ""
        };
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {WORKFLOW_COLUMNS} FROM workflows w {filter} \
                 ORDER BY w.created_at DESC, w.rowid DESC LIMIT ?1"
            ))
            .map_err(|e| StoreError::backend("prepare workflow list", e))?;
        let mut rows = match status {
            Some(status) => stmt.query(params![limit, status.as_str()]),
            None => stmt.query(params![limit]),
        }
        .map_err(|e| StoreError::backend("list workflows", e))?;
        let mut workflows = Vec::new();
        while let Some(row) = next_row(&mut rows, "list workflows")? {
            workflows.push(read_workflow(row, false)?);
        }
        Ok(workflows)
    }

    fn unfinished_workflows(&self) -> Result<Vec<WorkflowRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {WORKFLOW_COLUMNS}, s.spec FROM workflows w \
                 LEFT JOIN workflow_specs s ON s.workflow_id = w.id \
                 WHERE w.status IN (?1, ?2) ORDER BY w.created_at, w.rowid"
            ))
            .map_err(|e| StoreError::backend("prepare unfinished query", e))?;
        let mut rows = stmt
            .query([
                WorkflowStatus::Pending.as_str(),
                WorkflowStatus::Running.as_str(),
            ])
            .map_err(|e| StoreError::backend("query unfinished workflows", e))?;
        let mut workflows = Vec::new();
        while let Some(row) = next_row(&mut rows, "read unfinished workflows")? {
            workflows.push(read_workflow(row, true)?);
        }
        Ok(workflows)
    }

    /// Reads the ids alone: a row with a broken spec must not stop recovery of the others.
    fn unfinished_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT w.id FROM workflows w WHERE w.status IN (?1, ?2) \
                 ORDER BY w.created_at, w.rowid",
            )
            .map_err(|e| StoreError::backend("prepare unfinished ids query", e))?;
        let mut rows = stmt
            .query([
                WorkflowStatus::Pending.as_str(),
                WorkflowStatus::Running.as_str(),
            ])
            .map_err(|e| StoreError::backend("query unfinished ids", e))?;
        let mut ids = Vec::new();
        while let Some(row) = next_row(&mut rows, "read unfinished ids")? {
            let id: String = row
                .get(0)
                .map_err(|e| StoreError::Corrupt(format!("workflow id: {e}")))?;
            ids.push(id);
        }
        Ok(ids)
    }

    fn mark_unloadable(
        &self,
        workflow_id: &str,
        error: &Value,
        finished_at: u64,
    ) -> Result<(), StoreError> {
        let error = to_json(Some(error), "error", || format!("workflow `{workflow_id}`"))?;
        let finished_at = to_i64(finished_at, "finished_at", || {
            format!("workflow `{workflow_id}`")
        })?;
        let mut conn = self.conn();
        let tx = begin(&mut conn)?;
        tx.execute(
            "UPDATE workflows SET status = ?1, error = ?2, finished_at = ?3 WHERE id = ?4",
            params![
                WorkflowStatus::Failed.as_str(),
                error,
                finished_at,
                workflow_id
            ],
        )
        .map_err(|e| StoreError::backend("mark workflow unloadable", e))?;
        tx.commit()
            .map_err(|e| StoreError::backend("commit mark unloadable", e))?;
        drop(conn);
        self.committed();
        Ok(())
    }

    fn info(&self) -> StoreInfo {
        let healthy = self
            .conn()
            .query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
            .is_ok();
        StoreInfo {
            kind: "sqlite".to_string(),
            location: self.location.clone(),
            healthy,
        }
    }
}

mod checkpoint;
mod rows;
#[cfg(test)]
mod tests;

use checkpoint::*;
use rows::*;
