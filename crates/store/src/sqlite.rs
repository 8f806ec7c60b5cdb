//! [`SqliteStore`]: the embedded [`Store`] on one SQLite file.
//!
//! Layout (schema version 1, recorded in the `schema_version` table):
//!
//! - `workflows`: one small row per workflow, indexed by `created_at` and by
//!   `(status, created_at)` for listing.
//! - `workflow_specs`: the spec JSON of each workflow, kept apart so that listing and status
//!   updates never read or rewrite a multi-megabyte spec.
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
    Creation, Idempotency, KeptSubmission, Store, StoreError, StoreInfo, TaskRecord, TaskStatus,
    WorkflowRecord, WorkflowStatus,
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

const UPSERT_SPEC: &str = "INSERT INTO workflow_specs (workflow_id, spec) VALUES (?1, ?2) \
     ON CONFLICT (workflow_id) DO UPDATE SET spec = excluded.spec";

const INSERT_TASK: &str = "INSERT INTO tasks \
     (workflow_id, task_id, name, method, status, priority, attempts, params, result, error, \
     provider_id, queued_at, started_at, finished_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

const UPSERT_TASK: &str = "INSERT INTO tasks \
     (workflow_id, task_id, name, method, status, priority, attempts, params, result, error, \
     provider_id, queued_at, started_at, finished_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
     ON CONFLICT (workflow_id, task_id) DO UPDATE SET name = excluded.name, \
     method = excluded.method, status = excluded.status, priority = excluded.priority, \
     attempts = excluded.attempts, params = excluded.params, result = excluded.result, \
     error = excluded.error, provider_id = excluded.provider_id, \
     queued_at = excluded.queued_at, started_at = excluded.started_at, \
     finished_at = excluded.finished_at";

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
        if let Some(task) = tasks.iter().find(|t| t.workflow_id != wf.id) {
            return Err(StoreError::Invalid(format!(
                "task `{}` belongs to workflow `{}`, not `{}`",
                task.task_id, task.workflow_id, wf.id
            )));
        }
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
            let mut stmt = tx
                .prepare_cached(UPSERT_TASK)
                .map_err(|e| StoreError::backend("prepare upsert task", e))?;
            for task in tasks {
                if !known.contains(task.workflow_id.as_str()) {
                    let found = exists
                        .exists([&task.workflow_id])
                        .map_err(|e| StoreError::backend("look up workflow", e))?;
                    if !found {
                        return Err(StoreError::UnknownWorkflow {
                            id: task.workflow_id.clone(),
                        });
                    }
                    known.insert(task.workflow_id.as_str());
                }
                write_task(&mut stmt, task)?;
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

/// Runs WAL checkpoints on a thread of its own, with its own connection.
///
/// With SQLite's automatic checkpoints, the commit that pushes the WAL past its threshold
/// copies the WAL into the database file and syncs it before returning, which more than
/// doubles the latency of a large batch. Here every commit only nudges this thread, which
/// runs a `PASSIVE` checkpoint (never blocking the writer) at most every [`CHECKPOINT_PAUSE`].
/// The writer's own automatic checkpoint stays as a backstop at
/// [`BACKSTOP_CHECKPOINT_PAGES`], should this thread fall behind.
struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// Minimum time between two background checkpoints, so bursts of small commits share one.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);
/// WAL size (in pages) at which the writer checkpoints by itself (about 40 MB).
const BACKSTOP_CHECKPOINT_PAGES: i64 = 10_000;
/// Page cache of the writer connection, in KiB (SQLite's convention: negative = KiB).
const PAGE_CACHE_KIB: i64 = -64 * 1024;
/// Size (bytes) the WAL file is truncated to after a checkpoint reset it.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let conn =
            Connection::open(path).map_err(|e| StoreError::backend("open checkpointer", e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| StoreError::backend("set busy timeout", e))?;
        let (nudge, nudges) = sync_channel(1);
        let location = path.display().to_string();
        let thread = std::thread::Builder::new()
            .name("gleitzeit-store-checkpoint".to_string())
            .spawn(move || checkpoint_loop(&conn, &nudges, &location))
            .map_err(|e| StoreError::backend("start checkpointer thread", e))?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            thread: Some(thread),
        })
    }

    fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            // A full channel already holds a nudge: nothing to add.
            let _ = nudge.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Disconnecting the channel ends the loop; the last connection to close checkpoints.
        self.nudge = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn checkpoint_loop(conn: &Connection, nudges: &Receiver<()>, location: &str) {
    let mut dirty = false;
    loop {
        if !dirty && nudges.recv().is_err() {
            return;
        }
        let started = Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        }) {
            Ok((frames, copied)) => tracing::trace!(
                location,
                frames,
                copied,
                elapsed_us = started.elapsed().as_micros() as u64,
                "WAL checkpoint"
            ),
            Err(e) => tracing::warn!(location, error = %e, "WAL checkpoint failed"),
        }
        dirty = false;
        let until = Instant::now() + CHECKPOINT_PAUSE;
        loop {
            match nudges.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(()) => dirty = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

/// Begins an `IMMEDIATE` transaction (takes the write lock up front, so a concurrent writer
/// in another process waits for the busy timeout instead of failing mid-transaction).
fn begin(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| StoreError::backend("begin transaction", e))
}

fn next_row<'s>(
    rows: &'s mut rusqlite::Rows<'_>,
    operation: &'static str,
) -> Result<Option<&'s Row<'s>>, StoreError> {
    rows.next().map_err(|e| StoreError::backend(operation, e))
}

/// Writes the workflow row with `sql` (insert or upsert) and, unless it is `Null`, its spec.
fn write_workflow(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    wf: &WorkflowRecord,
) -> Result<(), StoreError> {
    let what = || format!("workflow `{}`", wf.id);
    let error = to_json(wf.error.as_ref(), "error", what)?;
    let total_tasks = to_i64(wf.total_tasks, "total_tasks", what)?;
    let created_at = to_i64(wf.created_at, "created_at", what)?;
    let started_at = opt_i64(wf.started_at, "started_at", what)?;
    let finished_at = opt_i64(wf.finished_at, "finished_at", what)?;
    tx.prepare_cached(sql)
        .and_then(|mut stmt| {
            stmt.execute(params![
                wf.id,
                wf.name,
                wf.status.as_str(),
                wf.base_dir,
                total_tasks,
                created_at,
                started_at,
                finished_at,
                error,
                wf.owner,
            ])
        })
        .map_err(|e| StoreError::backend("write workflow", e))?;
    if !wf.spec.is_null() {
        let spec = to_json(Some(&wf.spec), "spec", what)?;
        tx.prepare_cached(UPSERT_SPEC)
            .and_then(|mut stmt| stmt.execute(params![wf.id, spec]))
            .map_err(|e| StoreError::backend("write workflow spec", e))?;
    }
    Ok(())
}

/// Executes the (insert or upsert) task statement for one task.
fn write_task(
    stmt: &mut rusqlite::CachedStatement<'_>,
    task: &TaskRecord,
) -> Result<(), StoreError> {
    let what = || format!("task `{}/{}`", task.workflow_id, task.task_id);
    let params_json = to_json(task.params.as_ref(), "params", what)?;
    let result = to_json(task.result.as_ref(), "result", what)?;
    let error = to_json(task.error.as_ref(), "error", what)?;
    stmt.execute(params![
        task.workflow_id,
        task.task_id,
        task.name,
        task.method,
        task.status.as_str(),
        task.priority,
        task.attempts,
        params_json,
        result,
        error,
        task.provider_id,
        opt_i64(task.queued_at, "queued_at", what)?,
        opt_i64(task.started_at, "started_at", what)?,
        opt_i64(task.finished_at, "finished_at", what)?,
    ])
    .map_err(|e| match e.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => {
            StoreError::Invalid(format!("duplicate {}", what()))
        }
        _ => StoreError::backend("write task", e),
    })?;
    Ok(())
}

fn to_json(
    value: Option<&Value>,
    column: &str,
    what: impl Fn() -> String,
) -> Result<Option<String>, StoreError> {
    value.map(serde_json::to_string).transpose().map_err(|e| {
        StoreError::Invalid(format!("{}: `{column}` is not storable JSON: {e}", what()))
    })
}

fn to_i64(value: u64, column: &str, what: impl Fn() -> String) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("{}: `{column}` = {value} is too large", what())))
}

fn opt_i64(
    value: Option<u64>,
    column: &str,
    what: impl Fn() -> String,
) -> Result<Option<i64>, StoreError> {
    value.map(|v| to_i64(v, column, &what)).transpose()
}

/// Reads typed columns of one row; errors describe the column and become
/// [`StoreError::Corrupt`] once the row is identified.
struct Columns<'a, 'r> {
    row: &'a Row<'r>,
}

impl Columns<'_, '_> {
    fn get<T: FromSql>(&self, idx: usize, column: &str) -> Result<T, String> {
        self.row
            .get(idx)
            .map_err(|e| format!("column `{column}`: {e}"))
    }

    fn u64(&self, idx: usize, column: &str) -> Result<u64, String> {
        let value: i64 = self.get(idx, column)?;
        u64::try_from(value).map_err(|_| format!("column `{column}`: negative value {value}"))
    }

    fn opt_u64(&self, idx: usize, column: &str) -> Result<Option<u64>, String> {
        let value: Option<i64> = self.get(idx, column)?;
        value
            .map(|v| u64::try_from(v).map_err(|_| format!("column `{column}`: negative value {v}")))
            .transpose()
    }

    fn json(&self, idx: usize, column: &str) -> Result<Option<Value>, String> {
        let text: Option<String> = self.get(idx, column)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| format!("column `{column}`: invalid JSON: {e}"))
        })
        .transpose()
    }

    fn status<S: std::str::FromStr>(&self, idx: usize, column: &str) -> Result<S, String>
    where
        S::Err: std::fmt::Display,
    {
        let text: String = self.get(idx, column)?;
        text.parse().map_err(|e| format!("column `{column}`: {e}"))
    }
}

/// Reads a row selected with [`WORKFLOW_COLUMNS`] (followed by the spec if `with_spec`).
fn read_workflow(row: &Row<'_>, with_spec: bool) -> Result<WorkflowRecord, StoreError> {
    let cols = Columns { row };
    let id: String = cols
        .get(0, "id")
        .map_err(|e| StoreError::Corrupt(format!("workflow row: {e}")))?;
    let corrupt = |e: String| StoreError::Corrupt(format!("workflow `{id}`: {e}"));
    let spec = if with_spec {
        cols.json(10, "spec")
            .map_err(corrupt)?
            .unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    Ok(WorkflowRecord {
        name: cols.get(1, "name").map_err(corrupt)?,
        status: cols.status(2, "status").map_err(corrupt)?,
        spec,
        base_dir: cols.get(3, "base_dir").map_err(corrupt)?,
        total_tasks: cols.u64(4, "total_tasks").map_err(corrupt)?,
        created_at: cols.u64(5, "created_at").map_err(corrupt)?,
        started_at: cols.opt_u64(6, "started_at").map_err(corrupt)?,
        finished_at: cols.opt_u64(7, "finished_at").map_err(corrupt)?,
        error: cols.json(8, "error").map_err(corrupt)?,
        owner: cols.get(9, "owner").map_err(corrupt)?,
        id,
    })
}

/// The submission kept under an idempotency key.
fn read_kept(conn: &Connection, key: &str) -> Result<Option<KeptSubmission>, StoreError> {
    conn.prepare_cached("SELECT workflow_id, fingerprint FROM idempotency_keys WHERE key = ?1")
        .and_then(|mut stmt| {
            stmt.query_row([key], |row| {
                Ok(KeptSubmission {
                    workflow_id: row.get(0)?,
                    fingerprint: row.get(1)?,
                })
            })
            .optional()
        })
        .map_err(|e| StoreError::backend("look up idempotency key", e))
}

/// Stores made before workflows had owners get the column (their workflows have none).
fn add_owner_column(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
    let has_owner = tx
        .prepare("SELECT 1 FROM pragma_table_info('workflows') WHERE name = 'owner'")
        .and_then(|mut stmt| stmt.exists([]))
        .map_err(|e| StoreError::backend("read workflows columns", e))?;
    if !has_owner {
        tx.execute_batch("ALTER TABLE workflows ADD COLUMN owner TEXT")
            .map_err(|e| StoreError::backend("add the owner column", e))?;
    }
    Ok(())
}

/// Reads a row selected with [`TASK_COLUMNS`].
fn read_task(row: &Row<'_>) -> Result<TaskRecord, StoreError> {
    let cols = Columns { row };
    let ids: Result<(String, String), String> =
        (|| Ok((cols.get(0, "workflow_id")?, cols.get(1, "task_id")?)))();
    let (workflow_id, task_id) = ids.map_err(|e| StoreError::Corrupt(format!("task row: {e}")))?;
    let corrupt = |e: String| StoreError::Corrupt(format!("task `{workflow_id}/{task_id}`: {e}"));
    let status: TaskStatus = cols.status(4, "status").map_err(corrupt)?;
    Ok(TaskRecord {
        name: cols.get(2, "name").map_err(corrupt)?,
        method: cols.get(3, "method").map_err(corrupt)?,
        status,
        priority: cols.get(5, "priority").map_err(corrupt)?,
        attempts: cols.get(6, "attempts").map_err(corrupt)?,
        params: cols.json(7, "params").map_err(corrupt)?,
        result: cols.json(8, "result").map_err(corrupt)?,
        error: cols.json(9, "error").map_err(corrupt)?,
        provider_id: cols.get(10, "provider_id").map_err(corrupt)?,
        queued_at: cols.opt_u64(11, "queued_at").map_err(corrupt)?,
        started_at: cols.opt_u64(12, "started_at").map_err(corrupt)?,
        finished_at: cols.opt_u64(13, "finished_at").map_err(corrupt)?,
        workflow_id,
        task_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workflow(id: &str) -> WorkflowRecord {
        WorkflowRecord {
            id: id.to_string(),
            name: "wf".to_string(),
            status: WorkflowStatus::Running,
            spec: json!({ "tasks": [] }),
            base_dir: None,
            total_tasks: 1,
            created_at: 1,
            started_at: None,
            finished_at: None,
            error: None,
            owner: None,
        }
    }

    fn task(workflow_id: &str, task_id: &str) -> TaskRecord {
        TaskRecord::pending(workflow_id, task_id, task_id, "python/execute", 0)
    }

    fn store_with_one_task() -> SqliteStore {
        let store = SqliteStore::open_in_memory().expect("open");
        store
            .create_workflow(&workflow("wf"), &[task("wf", "a")])
            .expect("create");
        store
    }

    fn corrupt(store: &SqliteStore, sql: &str) {
        store.conn().execute(sql, []).expect("corrupt the row");
    }

    fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
        match result {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(needle), "`{message}` lacks `{needle}`")
            }
            other => panic!("expected a Corrupt error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_task_status_is_a_corrupt_error() {
        let store = store_with_one_task();
        corrupt(&store, "UPDATE tasks SET status = 'exploded'");
        expect_corrupt(store.tasks("wf"), "task `wf/a`: column `status`");
        expect_corrupt(store.task(None, "a"), "unknown task status `exploded`");
    }

    #[test]
    fn broken_json_is_a_corrupt_error() {
        let store = store_with_one_task();
        corrupt(&store, "UPDATE tasks SET result = '{not json'");
        expect_corrupt(store.tasks("wf"), "column `result`: invalid JSON");
        corrupt(&store, "UPDATE workflow_specs SET spec = '['");
        expect_corrupt(store.workflow("wf"), "workflow `wf`: column `spec`");
        // Listing does not read the spec, so it still works.
        assert_eq!(store.list_workflows(10, None).expect("list").len(), 1);
    }

    #[test]
    fn negative_times_and_wrong_types_are_corrupt_errors() {
        let store = store_with_one_task();
        corrupt(&store, "UPDATE workflows SET created_at = -5");
        expect_corrupt(store.list_workflows(10, None), "negative value -5");
        corrupt(&store, "UPDATE tasks SET attempts = 'many'");
        expect_corrupt(store.task(Some("wf"), "a"), "column `attempts`");
        corrupt(&store, "UPDATE tasks SET attempts = 5000000000");
        expect_corrupt(store.task(Some("wf"), "a"), "column `attempts`");
        corrupt(&store, "UPDATE workflows SET status = 7");
        expect_corrupt(store.workflow("wf"), "column `status`");
    }

    #[test]
    fn newer_schema_is_refused() {
        let store = SqliteStore::open_in_memory().expect("open");
        let conn = store.conn.into_inner().expect("not poisoned");
        conn.execute("INSERT INTO schema_version (version) VALUES (99)", [])
            .expect("bump version");
        match SqliteStore::init(conn, ":memory:".into()) {
            Err(StoreError::UnsupportedSchema { found, supported }) => {
                assert_eq!((found, supported), (99, SCHEMA_VERSION));
            }
            other => panic!("expected UnsupportedSchema, got {other:?}"),
        }
    }

    #[test]
    fn numbers_too_large_for_sqlite_are_rejected() {
        let store = SqliteStore::open_in_memory().expect("open");
        let mut wf = workflow("wf");
        wf.created_at = u64::MAX;
        match store.create_workflow(&wf, &[]) {
            Err(StoreError::Invalid(message)) => assert!(message.contains("created_at")),
            other => panic!("expected Invalid, got {other:?}"),
        }
        assert_eq!(store.workflow("wf").expect("read"), None);
    }
}
