//! Records to and from SQLite rows: writing workflows and tasks, reading them back, checked
//! conversions of numbers and JSON; a row that does not decode is reported as corrupt.

use super::*;

/// Begins an `IMMEDIATE` transaction (takes the write lock up front, so a concurrent writer
/// in another process waits for the busy timeout instead of failing mid-transaction).
pub(super) fn begin(conn: &mut Connection) -> Result<rusqlite::Transaction<'_>, StoreError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| StoreError::backend("begin transaction", e))
}

pub(super) fn next_row<'s>(
    rows: &'s mut rusqlite::Rows<'_>,
    operation: &'static str,
) -> Result<Option<&'s Row<'s>>, StoreError> {
    rows.next().map_err(|e| StoreError::backend(operation, e))
}

/// Writes the workflow row with `sql` (insert or upsert) and, unless it is `Null`, its spec.
pub(super) fn write_workflow(
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
    if let Some(spec) = wf.spec.text() {
        write_spec(tx, &wf.id, spec)?;
    }
    Ok(())
}

/// Writes a workflow's spec: the row gets a blob of the spec's length, which the spec is then
/// copied into (stored as UTF-8 bytes; [`read_workflow`] reads text and blobs alike).
fn write_spec(tx: &rusqlite::Transaction<'_>, id: &str, spec: &str) -> Result<(), StoreError> {
    use std::io::Write;
    let failed = |e| StoreError::backend("write workflow spec", e);
    let len = i64::try_from(spec.len())
        .map_err(|_| StoreError::Invalid(format!("workflow `{id}`: spec too large")))?;
    let rowid: i64 = tx
        .prepare_cached(UPSERT_SPEC_ROOM)
        .and_then(|mut stmt| stmt.query_row(params![id, len], |row| row.get(0)))
        .map_err(failed)?;
    let mut blob = tx
        .blob_open(rusqlite::MAIN_DB, "workflow_specs", "spec", rowid, false)
        .map_err(failed)?;
    blob.write_all(spec.as_bytes())
        .map_err(|e| StoreError::backend("write workflow spec", e))?;
    blob.close().map_err(failed)
}

/// Executes the (insert or upsert) task statement for one task.
pub(super) fn write_task(
    stmt: &mut rusqlite::CachedStatement<'_>,
    task: &TaskRecord,
) -> Result<usize, StoreError> {
    let what = || format!("task `{}/{}`", task.workflow_id, task.task_id);
    let params_json = json_column(task.params.as_ref());
    let result = json_column(task.result.as_ref());
    let error = to_json(task.error.as_ref(), "error", what)?;
    let changed = stmt
        .execute(params![
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
    Ok(changed)
}

/// JSON kept as text, as a column's text (`NULL` for none, `null` for JSON's null).
fn json_column(value: Option<&JsonText>) -> Option<&str> {
    value.map(|v| v.text().unwrap_or("null"))
}

pub(super) fn to_json(
    value: Option<&Value>,
    column: &str,
    what: impl Fn() -> String,
) -> Result<Option<String>, StoreError> {
    value.map(serde_json::to_string).transpose().map_err(|e| {
        StoreError::Invalid(format!("{}: `{column}` is not storable JSON: {e}", what()))
    })
}

pub(super) fn to_i64(
    value: u64,
    column: &str,
    what: impl Fn() -> String,
) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Invalid(format!("{}: `{column}` = {value} is too large", what())))
}

pub(super) fn opt_i64(
    value: Option<u64>,
    column: &str,
    what: impl Fn() -> String,
) -> Result<Option<i64>, StoreError> {
    value.map(|v| to_i64(v, column, &what)).transpose()
}

/// Reads typed columns of one row; errors describe the column and become
/// [`StoreError::Corrupt`] once the row is identified.
pub(super) struct Columns<'a, 'r> {
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

    /// A text column that may also hold its text as a blob of UTF-8 bytes (a spec).
    fn text_or_blob(&self, idx: usize, column: &str) -> Result<Option<String>, String> {
        use rusqlite::types::ValueRef;
        let value = self
            .row
            .get_ref(idx)
            .map_err(|e| format!("column `{column}`: {e}"))?;
        let bytes = match value {
            ValueRef::Null => return Ok(None),
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
            other => {
                return Err(format!(
                    "column `{column}`: {:?} is not text",
                    other.data_type()
                ))
            }
        };
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|e| format!("column `{column}`: not UTF-8: {e}"))
    }

    fn json(&self, idx: usize, column: &str) -> Result<Option<Value>, String> {
        let text: Option<String> = self.get(idx, column)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| format!("column `{column}`: invalid JSON: {e}"))
        })
        .transpose()
    }

    /// A column of JSON kept as text (checked, not parsed into values).
    fn json_text(&self, idx: usize, column: &str) -> Result<Option<JsonText>, String> {
        let text: Option<String> = self.get(idx, column)?;
        text.map(|t| {
            JsonText::from_text(t).map_err(|e| format!("column `{column}`: invalid JSON: {e}"))
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
pub(super) fn read_workflow(row: &Row<'_>, with_spec: bool) -> Result<WorkflowRecord, StoreError> {
    let cols = Columns { row };
    let id: String = cols
        .get(0, "id")
        .map_err(|e| StoreError::Corrupt(format!("workflow row: {e}")))?;
    let corrupt = |e: String| StoreError::Corrupt(format!("workflow `{id}`: {e}"));
    let spec = if with_spec {
        match cols.text_or_blob(10, "spec").map_err(corrupt)? {
            Some(t) => JsonText::from_text(t)
                .map_err(|e| corrupt(format!("column `spec`: invalid JSON: {e}")))?,
            None => JsonText::null(),
        }
    } else {
        JsonText::null()
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
pub(super) fn read_kept(
    conn: &Connection,
    key: &str,
) -> Result<Option<KeptSubmission>, StoreError> {
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
pub(super) fn add_owner_column(tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
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
pub(super) fn read_task(row: &Row<'_>) -> Result<TaskRecord, StoreError> {
    let cols = Columns { row };
    let ids: Result<(String, String), String> =
        (|| Ok((cols.get(0, "workflow_id")?, cols.get(1, "task_id")?)))();
    let (workflow_id, task_id) = ids.map_err(|e| StoreError::Corrupt(format!("task row: {e}")))?;
    let corrupt = |e: String| StoreError::Corrupt(format!("task `{workflow_id}/{task_id}`: {e}"));
    let status: TaskStatus = cols.status(4, "status").map_err(corrupt)?;
    Ok(TaskRecord {
        name: cols.get::<String>(2, "name").map_err(corrupt)?.into(),
        method: cols.get::<String>(3, "method").map_err(corrupt)?.into(),
        status,
        priority: cols.get(5, "priority").map_err(corrupt)?,
        attempts: cols.get(6, "attempts").map_err(corrupt)?,
        params: cols.json_text(7, "params").map_err(corrupt)?,
        result: cols.json_text(8, "result").map_err(corrupt)?,
        error: cols.json(9, "error").map_err(corrupt)?,
        provider_id: cols
            .get::<Option<String>>(10, "provider_id")
            .map_err(corrupt)?
            .map(Into::into),
        queued_at: cols.opt_u64(11, "queued_at").map_err(corrupt)?,
        started_at: cols.opt_u64(12, "started_at").map_err(corrupt)?,
        finished_at: cols.opt_u64(13, "finished_at").map_err(corrupt)?,
        workflow_id: workflow_id.into(),
        task_id: task_id.into(),
    })
}
