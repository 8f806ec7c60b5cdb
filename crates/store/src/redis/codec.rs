//! Records to and from their Redis form: workflow hashes and script arguments, task JSON
//! rows, index members; anything that does not decode is reported as corrupt.

use super::*;

/// A workflow as script arguments (see `put_workflow` in [`LUA_PUT_WORKFLOW`]).
pub(super) struct EncodedWorkflow<'a> {
    id: &'a str,
    created_at: String,
    status: &'static str,
    spec: Option<&'a str>,
    fields: Vec<(&'static str, String)>,
}

impl EncodedWorkflow<'_> {
    pub(super) fn push_args(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation
            .arg(self.id)
            .arg(&self.created_at)
            .arg(self.status)
            .arg(if self.spec.is_some() { "1" } else { "0" })
            .arg(self.spec.unwrap_or(""))
            .arg(self.fields.len() * 2);
        for (field, value) in &self.fields {
            invocation.arg(*field).arg(value);
        }
    }
}

pub(super) fn encode_workflow(wf: &WorkflowRecord) -> Result<EncodedWorkflow<'_>, StoreError> {
    let what = || format!("workflow `{}`", wf.id);
    let number = |value: u64, field: &str| -> Result<String, StoreError> {
        storable(value, field, what).map(|v| v.to_string())
    };
    let mut fields = vec![
        ("name", wf.name.clone()),
        ("status", wf.status.as_str().to_string()),
        ("total_tasks", number(wf.total_tasks, "total_tasks")?),
        ("created_at", number(wf.created_at, "created_at")?),
    ];
    if let Some(base_dir) = &wf.base_dir {
        fields.push(("base_dir", base_dir.clone()));
    }
    if let Some(started_at) = wf.started_at {
        fields.push(("started_at", number(started_at, "started_at")?));
    }
    if let Some(finished_at) = wf.finished_at {
        fields.push(("finished_at", number(finished_at, "finished_at")?));
    }
    if let Some(error) = &wf.error {
        fields.push(("error", to_json(error, "error", what)?));
    }
    if let Some(owner) = &wf.owner {
        fields.push(("owner", owner.clone()));
    }
    let spec = wf.spec.text();
    Ok(EncodedWorkflow {
        id: &wf.id,
        created_at: format!("{:020}", wf.created_at),
        status: wf.status.as_str(),
        spec,
        fields,
    })
}

/// A number the SQLite store can hold too.
pub(super) fn storable(
    value: u64,
    field: &str,
    what: impl Fn() -> String,
) -> Result<u64, StoreError> {
    if i64::try_from(value).is_ok() {
        Ok(value)
    } else {
        Err(StoreError::Invalid(format!(
            "{}: `{field}` = {value} is too large",
            what()
        )))
    }
}

pub(super) fn to_json(
    value: &Value,
    field: &str,
    what: impl Fn() -> String,
) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| {
        StoreError::Invalid(format!("{}: `{field}` is not storable JSON: {e}", what()))
    })
}

/// A task as stored in `{p}tasks:{id}` (its ids are the keys). Absent options are left
/// out; a present JSON `null` is kept as `Some(Value::Null)`.
#[derive(Serialize)]
pub(super) struct TaskOut<'a> {
    name: &'a str,
    method: &'a str,
    status: TaskStatus,
    priority: i32,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a JsonText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<&'a JsonText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queued_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at: Option<u64>,
}

/// The reading side of [`TaskOut`].
#[derive(Deserialize)]
pub(super) struct TaskIn {
    name: String,
    method: String,
    status: TaskStatus,
    priority: i32,
    attempts: u32,
    #[serde(default, deserialize_with = "present")]
    params: Option<JsonText>,
    #[serde(default, deserialize_with = "present")]
    result: Option<JsonText>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Value>,
    #[serde(default)]
    provider_id: Option<String>,
    #[serde(default)]
    queued_at: Option<u64>,
    #[serde(default)]
    started_at: Option<u64>,
    #[serde(default)]
    finished_at: Option<u64>,
}

/// A field that is present is `Some`, even when it is `null`.
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

pub(super) fn encode_task(task: &TaskRecord) -> Result<String, StoreError> {
    let what = || format!("task `{}/{}`", task.workflow_id, task.task_id);
    let time = |value: Option<u64>, field: &str| -> Result<Option<u64>, StoreError> {
        value.map(|v| storable(v, field, what)).transpose()
    };
    let row = TaskOut {
        name: &task.name,
        method: &task.method,
        status: task.status,
        priority: task.priority,
        attempts: task.attempts,
        params: task.params.as_ref(),
        result: task.result.as_ref(),
        error: task.error.as_ref(),
        provider_id: task.provider_id.as_deref(),
        queued_at: time(task.queued_at, "queued_at")?,
        started_at: time(task.started_at, "started_at")?,
        finished_at: time(task.finished_at, "finished_at")?,
    };
    serde_json::to_string(&row)
        .map_err(|e| StoreError::Invalid(format!("{}: not storable as JSON: {e}", what())))
}

pub(super) fn decode_task(
    workflow_id: &str,
    task_id: &str,
    row: &[u8],
) -> Result<TaskRecord, StoreError> {
    let row: TaskIn = serde_json::from_slice(row).map_err(|e| {
        StoreError::Corrupt(format!(
            "task `{workflow_id}/{task_id}`: invalid record: {e}"
        ))
    })?;
    Ok(TaskRecord {
        workflow_id: workflow_id.into(),
        task_id: task_id.into(),
        name: row.name.into(),
        method: row.method.into(),
        status: row.status,
        priority: row.priority,
        attempts: row.attempts,
        params: row.params,
        result: row.result,
        error: row.error,
        provider_id: row.provider_id.map(Into::into),
        queued_at: row.queued_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
    })
}

/// Pairs the order list with the `HGETALL` reply (field, value, field, value, ...).
pub(super) fn decode_tasks(
    workflow_id: &str,
    order: Vec<Vec<u8>>,
    rows: Vec<Vec<u8>>,
) -> Result<Vec<TaskRecord>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt(format!("tasks of `{workflow_id}`: {what}"));
    if rows.len() != order.len() * 2 {
        return Err(corrupt(format!(
            "{} task ids in the order list but {} values in the task hash",
            order.len(),
            rows.len()
        )));
    }
    let by_id: std::collections::HashMap<&[u8], &[u8]> = rows
        .chunks_exact(2)
        .map(|pair| (pair[0].as_slice(), pair[1].as_slice()))
        .collect();
    order
        .iter()
        .map(|task_id| {
            let task_id_text = std::str::from_utf8(task_id)
                .map_err(|_| corrupt("a task id is not UTF-8".to_string()))?;
            let row = by_id.get(task_id.as_slice()).ok_or_else(|| {
                corrupt(format!("task `{task_id_text}` is listed but has no record"))
            })?;
            decode_task(workflow_id, task_id_text, row)
        })
        .collect()
}

/// The status of a task row, read without building the rest of the record.
pub(super) fn decode_status(
    workflow_id: &str,
    task_id: &str,
    row: &[u8],
) -> Result<TaskStatus, StoreError> {
    #[derive(Deserialize)]
    struct StatusOnly {
        status: TaskStatus,
    }
    serde_json::from_slice::<StatusOnly>(row)
        .map(|row| row.status)
        .map_err(|e| {
            StoreError::Corrupt(format!(
                "task `{workflow_id}/{task_id}`: invalid record: {e}"
            ))
        })
}

/// The workflow id of an index member `{created_at:020}:{seq:020}:{id}`.
pub(super) fn member_id(member: &[u8]) -> Result<&str, StoreError> {
    let well_formed = member.len() >= MEMBER_HEAD
        && member[20] == b':'
        && member[41] == b':'
        && member[..20]
            .iter()
            .chain(&member[21..41])
            .all(u8::is_ascii_digit);
    let id = well_formed
        .then(|| std::str::from_utf8(&member[MEMBER_HEAD..]).ok())
        .flatten();
    id.ok_or_else(|| {
        StoreError::Corrupt(format!(
            "malformed workflow index entry `{}`",
            String::from_utf8_lossy(member)
        ))
    })
}

/// Builds a workflow from its `HMGET` of [`WORKFLOW_FIELDS`] and its spec; `None` if the
/// hash does not exist.
pub(super) fn decode_workflow(
    id: &str,
    fields: Vec<Option<Vec<u8>>>,
    spec: Option<Vec<u8>>,
) -> Result<Option<WorkflowRecord>, StoreError> {
    let corrupt = |e: String| StoreError::Corrupt(format!("workflow `{id}`: {e}"));
    let Ok(
        [name, status, base_dir, total_tasks, created_at, started_at, finished_at, error, owner],
    ) = <[Option<Vec<u8>>; 9]>::try_from(fields)
    else {
        return Err(corrupt("wrong number of fields".to_string()));
    };
    if [
        &name,
        &status,
        &base_dir,
        &total_tasks,
        &created_at,
        &started_at,
        &finished_at,
        &error,
    ]
    .iter()
    .all(|f| f.is_none())
    {
        return Ok(None);
    }
    let spec = match text(spec, "spec").map_err(corrupt)? {
        Some(t) => JsonText::from_text(t)
            .map_err(|e| corrupt(format!("field `spec`: invalid JSON: {e}")))?,
        None => JsonText::null(),
    };
    Ok(Some(WorkflowRecord {
        id: id.to_string(),
        name: required(text(name, "name"), "name").map_err(corrupt)?,
        status: required(parsed(status, "status"), "status").map_err(corrupt)?,
        spec,
        base_dir: text(base_dir, "base_dir").map_err(corrupt)?,
        total_tasks: required(parsed(total_tasks, "total_tasks"), "total_tasks")
            .map_err(corrupt)?,
        created_at: required(parsed(created_at, "created_at"), "created_at").map_err(corrupt)?,
        started_at: parsed(started_at, "started_at").map_err(corrupt)?,
        finished_at: parsed(finished_at, "finished_at").map_err(corrupt)?,
        error: opt_json(error, "error").map_err(corrupt)?,
        owner: text(owner, "owner").map_err(corrupt)?,
    }))
}

pub(super) fn text(value: Option<Vec<u8>>, field: &str) -> Result<Option<String>, String> {
    value
        .map(|bytes| String::from_utf8(bytes).map_err(|_| format!("field `{field}`: not UTF-8")))
        .transpose()
}

pub(super) fn parsed<T: std::str::FromStr>(
    value: Option<Vec<u8>>,
    field: &str,
) -> Result<Option<T>, String>
where
    T::Err: std::fmt::Display,
{
    text(value, field)?
        .map(|t| {
            t.parse()
                .map_err(|e| format!("field `{field}`: `{t}`: {e}"))
        })
        .transpose()
}

pub(super) fn required<T>(value: Result<Option<T>, String>, field: &str) -> Result<T, String> {
    value?.ok_or_else(|| format!("field `{field}` is missing"))
}

pub(super) fn opt_json(value: Option<Vec<u8>>, field: &str) -> Result<Option<Value>, String> {
    value
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("field `{field}`: invalid JSON: {e}"))
        })
        .transpose()
}
