//! [`RedisStore`]: the [`Store`] on a Redis server (7.0 or newer).
//!
//! # Key layout
//!
//! Every key starts with a prefix (`gz:` by default, see [`RedisStore::open_with_prefix`]);
//! `{p}` below is that prefix and `{id}` a workflow id.
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{p}wf:{id}` | hash | the workflow record without its spec: `name`, `status`, `total_tasks`, `created_at`, and when set `base_dir`, `started_at`, `finished_at`, `error` (JSON), `owner`; plus `seq` (insertion counter), `member` (its entry in the indexes below) and `token` (see atomicity) |
//! | `{p}spec:{id}` | string | the spec JSON, kept apart so that listing and status updates never read or rewrite a multi-megabyte spec |
//! | `{p}order:{id}` | list | the task ids in insertion order |
//! | `{p}tasks:{id}` | hash | task id → the task record as JSON (without its ids, which are in the keys) |
//! | `{p}workflows` | sorted set | one `member` per workflow |
//! | `{p}status:{status}` | sorted set | the `member`s of the workflows in that status |
//! | `{p}seq` | string | the counter behind `seq` |
//! | `{p}idem:{key}` | hash | an idempotency key ([`crate::idempotency`]): `workflow` (the id it created) and `fingerprint`, written by the script that creates the workflow |
//! | `{p}stagetasks:{token}`, `{p}stageorder:{token}` | hash, list | the tasks of a big workflow while one creator stages them (see atomicity); they expire after 10 minutes unless the workflow is created, which renames them to its `tasks:`/`order:` keys |
//!
//! The id comes last in every key and each kind of key has its own leading word, so no id
//! can make two keys collide (with `{p}wf:{id}:spec`, workflow `x:spec`'s record would be
//! workflow `x`'s spec).
//!
//! A `member` is `{created_at:020}:{seq:020}:{id}` with score 0: sorted sets order equal
//! scores by their bytes, so the indexes are ordered by creation time, then insertion order,
//! exactly as the SQLite store's `ORDER BY created_at, rowid`, for every `u64` time.
//! [`Store::list_workflows`] reads them backwards, [`Store::unfinished_workflows`] merges
//! `{p}status:pending` and `{p}status:running` forwards. Replacing a workflow keeps its `seq`
//! (like SQLite's rowid) and moves its `member` if its `created_at` or status changed.
//! [`Store::task`] without a workflow id has no index to use (one per task id would double
//! the cost of storing a 100,000-task workflow): it probes the workflows' task hashes newest
//! first, a page of [`SCAN_PAGE`] workflows per round trip.
//!
//! Numbers above `i64::MAX` are refused with [`StoreError::Invalid`], as SQLite refuses
//! them, so that records move between the two backends unchanged.
//!
//! # Atomicity
//!
//! [`Store::create_workflow`] and [`Store::apply`] are each one Lua script, which Redis runs
//! without interleaving any other client's command. Each script first makes every check (the
//! workflow does not exist yet; every task's workflow exists or comes in the same batch)
//! and returns before its first write if one fails, so a refused call changes nothing; the
//! scripts declare the `#!lua` flags of Redis 7, so that a server out of memory refuses a
//! script before it starts rather than in the middle (what could still stop one midway is
//! foreign data of the wrong type under the prefix). Two writers can therefore never both
//! create the same workflow. The tasks of a new workflow are written with one `HSET` and one
//! `RPUSH` per [`CHUNK`] tasks inside the script. A workflow of more than [`STAGE_CHUNK`]
//! tasks is written in several calls, so that neither the caller nor Redis holds all its
//! arguments at once (one call of 100,000 tasks held ~80 MB in the queue-manager alone): its
//! tasks are first staged, [`STAGE_CHUNK`] per call, under keys of the creator's own token
//! (which no other creator and no reader uses), and then the one create script makes its
//! checks and, if they pass, renames the staged keys to the workflow's (`RENAME` is O(1));
//! if they fail it deletes them. A creator that dies between calls leaves only staging keys,
//! which expire. The workflow therefore still appears whole or not at all.
//!
//! Reads that take several keys (`HMGET` + `GET` for a workflow, `LRANGE` + `HGETALL` for
//! its tasks) run as one `MULTI`/`EXEC` and so see one state.
//! [`Store::task_counts`] and a page of the tasks of one status walk the workflow
//! [`READ_PAGE`] tasks per round trip instead (counting read every task of a finished
//! 100,000-task workflow at once, ~80 MB in the queue-manager for one status poll).
//!
//! # Connection
//!
//! One connection behind a mutex serves all callers, with 5 s connect, read and write
//! timeouts. When a command fails with an I/O error (Redis restarted, network broke) the
//! connection is dropped, a new one is made and the call is retried once; if that fails too
//! the call fails with [`StoreError::Unavailable`] (`GZ1001`) and the next call tries to
//! connect again, so a restarted Redis is picked up without restarting the service. Retrying
//! is safe: `apply` is an upsert, and `create_workflow` carries a token that lets its retry
//! recognise a first attempt that did succeed before its reply was lost.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::{Client, Connection, RedisError, Script, ServerErrorKind};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::{
    Creation, Idempotency, JsonText, KeptSubmission, Store, StoreError, StoreInfo, TaskRecord,
    TaskStatus, WorkflowRecord, WorkflowStatus,
};

/// The key prefix of [`RedisStore::open`].
pub const DEFAULT_PREFIX: &str = "gz:";

/// Connect, read and write timeout of the connection.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Tasks per `HSET`/`RPUSH` when a workflow is created.
pub const CHUNK: usize = 1_000;

/// Tasks per call when a big workflow is created: a workflow of more tasks is staged in
/// calls of this many tasks and then created by one last call (see the module docs), so
/// that neither this process nor Redis holds a whole workflow's arguments at once.
pub const STAGE_CHUNK: usize = 5_000;

/// Tasks per round trip when a workflow's tasks are walked (counting them by status,
/// filtering them by status).
pub const READ_PAGE: usize = 5_000;

/// How long staged tasks wait for their next chunk or their workflow before Redis drops
/// them.
const STAGE_TTL: Duration = Duration::from_secs(600);

/// Workflows probed per round trip by [`Store::task`] without a workflow id.
pub const SCAN_PAGE: usize = 256;

/// The fields of a workflow hash that make up the record (spec aside), in the order
/// [`decode_workflow`] reads them.
const WORKFLOW_FIELDS: [&str; 9] = [
    "name",
    "status",
    "base_dir",
    "total_tasks",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "owner",
];

/// Length of the `{created_at:020}:{seq:020}:` head of an index member.
const MEMBER_HEAD: usize = 42;

mod codec;
mod create;
mod scripts;
#[cfg(test)]
mod tests;

use codec::*;
use scripts::*;

/// The [`Store`] on a Redis server.
///
/// Cheap to share as `Arc<RedisStore>` / `Arc<dyn Store>`; calls are serialized on one
/// connection, which is re-established after Redis restarts.
pub struct RedisStore {
    client: Client,
    /// The URL with any password masked.
    location: String,
    prefix: String,
    conn: Mutex<Option<Connection>>,
    create: Script,
    stage: Script,
    apply: Script,
    claim: Script,
    release: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("location", &self.location)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why one attempt of a call failed.
enum Failure {
    /// Redis (or the connection to it) failed.
    Redis {
        operation: &'static str,
        cause: RedisError,
    },
    /// Anything else; never retried.
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

/// Tags a Redis error with what the store was doing.
fn op(operation: &'static str) -> impl Fn(RedisError) -> Failure {
    move |cause| Failure::Redis { operation, cause }
}

/// Whether the error means the connection is unusable or Redis is not serving yet.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || e.kind() == redis::ErrorKind::Server(ServerErrorKind::BusyLoading)
}

impl RedisStore {
    /// Connects to the Redis server at `url` (e.g. `redis://127.0.0.1:6379/0`, with
    /// `redis://:password@host` or `redis://user:password@host` for authentication) using
    /// the key prefix [`DEFAULT_PREFIX`], and checks that it answers `PING`.
    ///
    /// Fails with [`StoreError::Unavailable`] if the server cannot be reached, and with
    /// [`StoreError::Backend`] if the URL is malformed.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with_prefix(url, DEFAULT_PREFIX)
    }

    /// Like [`RedisStore::open`], with every key starting with `prefix` (so that several
    /// stores, e.g. tests, can share one server).
    pub fn open_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let location = mask_password(url);
        let client = Client::open(url).map_err(|e| {
            StoreError::backend("parse the Redis URL", format!("`{location}`: {e}"))
        })?;
        let statuses: Vec<String> = WorkflowStatus::ALL
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let header = format!(
            "#!lua flags=no-cluster\nlocal STATUSES = {{ {} }}\nlocal CHUNK = {CHUNK}\n{LUA_PUT_WORKFLOW}",
            statuses.join(", ")
        );
        let store = RedisStore {
            client,
            location,
            prefix: prefix.to_string(),
            conn: Mutex::new(None),
            create: Script::new(&format!("{header}{LUA_PUSH_TASKS}{LUA_CREATE}")),
            stage: Script::new(&format!(
                "#!lua flags=no-cluster\nlocal CHUNK = {CHUNK}\n{LUA_PUSH_TASKS}{LUA_STAGE}"
            )),
            apply: Script::new(&format!("{header}{LUA_APPLY}")),
            claim: Script::new(LUA_CLAIM),
            release: Script::new(LUA_RELEASE),
        };
        let conn = store.connect()?;
        *store.lock() = Some(conn);
        tracing::debug!(location = %store.location, prefix, "opened Redis store");
        Ok(store)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The connection slot. After a panic in another caller the connection may hold an
    /// unread reply, so a poisoned slot is emptied (the next call reconnects).
    fn lock(&self) -> MutexGuard<'_, Option<Connection>> {
        match self.conn.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                self.conn.clear_poison();
                let mut guard = poisoned.into_inner();
                *guard = None;
                guard
            }
        }
    }

    fn unavailable(&self, cause: &RedisError) -> StoreError {
        StoreError::Unavailable(format!("Redis at {}: {cause}", self.location))
    }

    /// A new connection with timeouts, checked with `PING`, with the scripts loaded.
    fn connect(&self) -> Result<Connection, StoreError> {
        let mut conn = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| self.unavailable(&e))?;
        conn.set_read_timeout(Some(TIMEOUT))
            .and_then(|()| conn.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| self.unavailable(&e))?;
        redis::cmd("PING")
            .query::<()>(&mut conn)
            .map_err(|e| self.unavailable(&e))?;
        for script in [&self.create, &self.apply] {
            script.prepare_invoke().load(&mut conn).map_err(|e| {
                if is_connection_error(&e) {
                    self.unavailable(&e)
                } else {
                    StoreError::backend("load the Lua scripts (Redis 7.0 or newer is needed)", e)
                }
            })?;
        }
        Ok(conn)
    }

    /// Runs `f` on the connection, connecting first if there is none. On a connection
    /// error the connection is dropped and `f` runs once more on a new one.
    fn call<T>(&self, f: impl Fn(&mut Connection) -> Result<T, Failure>) -> Result<T, StoreError> {
        let mut slot = self.lock();
        let mut retried = false;
        loop {
            let conn = match &mut *slot {
                Some(conn) => conn,
                empty => empty.insert(self.connect()?),
            };
            match f(conn) {
                Ok(value) => return Ok(value),
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Redis { operation, cause }) if is_connection_error(&cause) => {
                    *slot = None;
                    if retried {
                        return Err(self.unavailable(&cause));
                    }
                    tracing::warn!(
                        location = %self.location,
                        operation,
                        error = %cause,
                        "Redis connection failed; reconnecting"
                    );
                    retried = true;
                }
                Err(Failure::Redis { operation, cause }) => {
                    return Err(StoreError::backend(operation, cause))
                }
            }
        }
    }

    /// Calls `visit(task id, task row)` for the tasks of a workflow in insertion order from
    /// position `from`, reading `page` of them (at most [`READ_PAGE`]) per round trip
    /// (`LRANGE` of the order, `HMGET` of the rows), so that walking a big workflow never
    /// holds more than a page; stops when `visit` returns `false`. Pages are separate reads:
    /// a task added meanwhile is seen if its page is read after it (tasks are appended,
    /// never removed).
    fn walk_tasks(
        &self,
        workflow_id: &str,
        from: usize,
        page: usize,
        mut visit: impl FnMut(&str, &[u8]) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let (order_key, tasks_key) = (
            self.key("order", workflow_id),
            self.key("tasks", workflow_id),
        );
        let page = page.clamp(1, READ_PAGE);
        let mut offset = from;
        loop {
            let (ids, rows) = self.call(|conn| {
                let ids: Vec<Vec<u8>> = redis::cmd("LRANGE")
                    .arg(&order_key)
                    .arg(offset)
                    .arg(offset.saturating_add(page - 1))
                    .query(conn)
                    .map_err(op("read a page of task ids"))?;
                if ids.is_empty() {
                    return Ok((ids, Vec::new()));
                }
                let rows: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                    .arg(&tasks_key)
                    .arg(&ids)
                    .query(conn)
                    .map_err(op("read a page of tasks"))?;
                Ok((ids, rows))
            })?;
            for (id, row) in ids.iter().zip(rows) {
                let corrupt = |what: &str| {
                    StoreError::Corrupt(format!(
                        "tasks of `{workflow_id}`: task `{}` {what}",
                        String::from_utf8_lossy(id)
                    ))
                };
                let id =
                    std::str::from_utf8(id).map_err(|_| corrupt("has an id that is not UTF-8"))?;
                let row = row.ok_or_else(|| corrupt("is listed but has no record"))?;
                if !visit(id, &row)? {
                    return Ok(());
                }
            }
            if ids.len() < page {
                return Ok(());
            }
            offset = offset.saturating_add(page);
        }
    }

    /// `{p}{kind}:{id}`, e.g. `gz:wf:wf-1` or `gz:tasks:wf-1`.
    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}{kind}:{id}", self.prefix)
    }

    fn status_key(&self, status: WorkflowStatus) -> String {
        format!("{}status:{}", self.prefix, status.as_str())
    }

    /// The index members of pending and running workflows, in creation order (one
    /// `MULTI`/`EXEC`, so a workflow moving between the two is seen once).
    fn unfinished_members(&self, conn: &mut Connection) -> Result<Vec<Vec<u8>>, Failure> {
        let (mut members, running): (Vec<Vec<u8>>, Vec<Vec<u8>>) = redis::pipe()
            .atomic()
            .cmd("ZRANGE")
            .arg(self.status_key(WorkflowStatus::Pending))
            .arg(0)
            .arg(-1)
            .cmd("ZRANGE")
            .arg(self.status_key(WorkflowStatus::Running))
            .arg(0)
            .arg(-1)
            .query(conn)
            .map_err(op("list unfinished workflows"))?;
        members.extend(running);
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }

    /// Reads the workflows named by index members (with or without their specs), in order.
    fn read_workflows(
        &self,
        conn: &mut Connection,
        members: &[Vec<u8>],
        with_spec: bool,
    ) -> Result<Vec<WorkflowRecord>, Failure> {
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let ids = members
            .iter()
            .map(|m| member_id(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(self.key("wf", id))
                .arg(&WORKFLOW_FIELDS[..]);
            if with_spec {
                pipe.cmd("GET").arg(self.key("spec", id));
            }
        }
        let mut replies: std::vec::IntoIter<redis::Value> = pipe
            .query::<Vec<redis::Value>>(conn)
            .map_err(op("read workflows"))?
            .into_iter();
        let mut workflows = Vec::with_capacity(ids.len());
        for id in ids {
            let fields: Vec<Option<Vec<u8>>> = take(&mut replies, "read workflows")?;
            let spec: Option<Vec<u8>> = if with_spec {
                take(&mut replies, "read workflow spec")?
            } else {
                None
            };
            match decode_workflow(id, fields, spec)? {
                Some(wf) => workflows.push(wf),
                None => {
                    return Err(StoreError::Corrupt(format!(
                        "the index names workflow `{id}`, which has no record"
                    ))
                    .into())
                }
            }
        }
        Ok(workflows)
    }
}

/// The next reply of a pipeline, converted.
fn take<T: redis::FromRedisValue>(
    replies: &mut impl Iterator<Item = redis::Value>,
    operation: &'static str,
) -> Result<T, Failure> {
    let value = replies
        .next()
        .ok_or_else(|| StoreError::backend(operation, "Redis sent fewer replies than commands"))?;
    redis::from_redis_value(value).map_err(|e| Failure::Redis {
        operation,
        cause: e.into(),
    })
}

impl Store for RedisStore {
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
        let hash = self.key("idem", key);
        let (workflow_id, fingerprint): (Option<String>, Option<String>) = self.call(|conn| {
            redis::cmd("HMGET")
                .arg(&hash)
                .arg("workflow")
                .arg("fingerprint")
                .query(conn)
                .map_err(op("read idempotency key"))
        })?;
        Ok(workflow_id.map(|workflow_id| KeptSubmission {
            workflow_id,
            fingerprint: fingerprint.unwrap_or_default(),
        }))
    }

    fn apply(&self, workflows: &[WorkflowRecord], tasks: &[TaskRecord]) -> Result<(), StoreError> {
        if workflows.is_empty() && tasks.is_empty() {
            return Ok(());
        }
        let mut invocation = self.apply.prepare_invoke();
        invocation.arg(&self.prefix).arg(workflows.len());
        for wf in workflows {
            encode_workflow(wf)?.push_args(&mut invocation);
        }
        for task in tasks {
            invocation
                .arg(&*task.workflow_id)
                .arg(&*task.task_id)
                .arg(encode_task(task)?);
        }
        let unknown: Vec<String> =
            self.call(|conn| invocation.invoke(conn).map_err(op("apply script")))?;
        match unknown.into_iter().next() {
            None => Ok(()),
            Some(id) => Err(StoreError::UnknownWorkflow { id }),
        }
    }

    fn workflow(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let (key, spec_key) = (self.key("wf", id), self.key("spec", id));
        self.call(|conn| {
            let (fields, spec): (Vec<Option<Vec<u8>>>, Option<Vec<u8>>) = redis::pipe()
                .atomic()
                .cmd("HMGET")
                .arg(&key)
                .arg(&WORKFLOW_FIELDS[..])
                .cmd("GET")
                .arg(&spec_key)
                .query(conn)
                .map_err(op("read workflow"))?;
            Ok(decode_workflow(id, fields, spec)?)
        })
    }

    fn workflow_head(&self, id: &str) -> Result<Option<WorkflowRecord>, StoreError> {
        let key = self.key("wf", id);
        self.call(|conn| {
            let fields: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                .arg(&key)
                .arg(&WORKFLOW_FIELDS[..])
                .query(conn)
                .map_err(op("read workflow"))?;
            Ok(decode_workflow(id, fields, None)?)
        })
    }

    fn tasks(&self, workflow_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let (order_key, tasks_key) = (
            self.key("order", workflow_id),
            self.key("tasks", workflow_id),
        );
        self.call(|conn| {
            let (order, rows): (Vec<Vec<u8>>, Vec<Vec<u8>>) = redis::pipe()
                .atomic()
                .cmd("LRANGE")
                .arg(&order_key)
                .arg(0)
                .arg(-1)
                .cmd("HGETALL")
                .arg(&tasks_key)
                .query(conn)
                .map_err(op("read tasks"))?;
            Ok(decode_tasks(workflow_id, order, rows)?)
        })
    }

    fn tasks_page(
        &self,
        workflow_id: &str,
        status: Option<TaskStatus>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The hash has no index by status: with a status, the walk starts at the first task
        // and decodes only the status of tasks that are skipped or do not match.
        let (from, mut skip, page) = match status {
            Some(_) => (0, offset, READ_PAGE),
            None => (offset, 0, limit),
        };
        let mut tasks = Vec::new();
        self.walk_tasks(workflow_id, from, page, |id, row| {
            if let Some(wanted) = status {
                if decode_status(workflow_id, id, row)? != wanted {
                    return Ok(true);
                }
                if skip > 0 {
                    skip -= 1;
                    return Ok(true);
                }
            }
            tasks.push(decode_task(workflow_id, id, row)?);
            Ok(tasks.len() < limit)
        })?;
        Ok(tasks)
    }

    fn task_counts(&self, workflow_id: &str) -> Result<Vec<(TaskStatus, usize)>, StoreError> {
        let mut counts: Vec<(TaskStatus, usize)> = Vec::new();
        self.walk_tasks(workflow_id, 0, READ_PAGE, |id, row| {
            let status = decode_status(workflow_id, id, row)?;
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => counts.push((status, 1)),
            }
            Ok(true)
        })?;
        Ok(counts)
    }

    fn task(
        &self,
        workflow_id: Option<&str>,
        task_id: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        if let Some(workflow_id) = workflow_id {
            let key = self.key("tasks", workflow_id);
            return self.call(|conn| {
                let row: Option<Vec<u8>> = redis::cmd("HGET")
                    .arg(&key)
                    .arg(task_id)
                    .query(conn)
                    .map_err(op("read task"))?;
                Ok(row
                    .map(|row| decode_task(workflow_id, task_id, &row))
                    .transpose()?)
            });
        }
        let index = format!("{}workflows", self.prefix);
        self.call(|conn| {
            let mut start = 0usize;
            loop {
                let members: Vec<Vec<u8>> = redis::cmd("ZREVRANGE")
                    .arg(&index)
                    .arg(start)
                    .arg(start + SCAN_PAGE - 1)
                    .query(conn)
                    .map_err(op("list workflows"))?;
                if members.is_empty() {
                    return Ok(None);
                }
                let ids = members
                    .iter()
                    .map(|m| member_id(m))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut pipe = redis::pipe();
                for id in &ids {
                    pipe.cmd("HGET").arg(self.key("tasks", id)).arg(task_id);
                }
                let rows: Vec<Option<Vec<u8>>> = pipe.query(conn).map_err(op("find task"))?;
                if let Some((id, row)) = ids
                    .iter()
                    .zip(rows)
                    .find_map(|(id, row)| row.map(|row| (id, row)))
                {
                    return Ok(Some(decode_task(id, task_id, &row)?));
                }
                if members.len() < SCAN_PAGE {
                    return Ok(None);
                }
                start += SCAN_PAGE;
            }
        })
    }

    fn list_workflows(
        &self,
        limit: usize,
        status: Option<WorkflowStatus>,
    ) -> Result<Vec<WorkflowRecord>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let index = match status {
            Some(status) => self.status_key(status),
            None => format!("{}workflows", self.prefix),
        };
        let stop = isize::try_from(limit - 1).unwrap_or(-1);
        self.call(|conn| {
            let members: Vec<Vec<u8>> = redis::cmd("ZREVRANGE")
                .arg(&index)
                .arg(0)
                .arg(stop)
                .query(conn)
                .map_err(op("list workflows"))?;
            self.read_workflows(conn, &members, false)
        })
    }

    fn unfinished_workflows(&self) -> Result<Vec<WorkflowRecord>, StoreError> {
        self.call(|conn| {
            let members = self.unfinished_members(conn)?;
            self.read_workflows(conn, &members, true)
        })
    }

    fn unfinished_ids(&self) -> Result<Vec<String>, StoreError> {
        self.call(|conn| {
            self.unfinished_members(conn)?
                .iter()
                .map(|m| member_id(m).map(str::to_string).map_err(Failure::Store))
                .collect()
        })
    }

    fn claim(
        &self,
        workflow_id: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let key = self.key("owner", workflow_id);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.call(|conn| {
            let got: i64 = self
                .claim
                .key(&key)
                .arg(owner)
                .arg(ttl_ms)
                .invoke(conn)
                .map_err(op("claim workflow"))?;
            Ok(got == 1)
        })
    }

    fn owner(&self, workflow_id: &str) -> Result<Option<String>, StoreError> {
        let key = self.key("owner", workflow_id);
        self.call(|conn| {
            redis::cmd("GET")
                .arg(&key)
                .query(conn)
                .map_err(op("read workflow owner"))
        })
    }

    fn release(&self, workflow_id: &str, owner: &str) -> Result<(), StoreError> {
        let key = self.key("owner", workflow_id);
        self.call(|conn| {
            let _: i64 = self
                .release
                .key(&key)
                .arg(owner)
                .invoke(conn)
                .map_err(op("release workflow"))?;
            Ok(())
        })
    }

    fn info(&self) -> StoreInfo {
        let healthy = self
            .call(|conn| redis::cmd("PING").query::<()>(conn).map_err(op("ping")))
            .is_ok();
        StoreInfo {
            kind: "redis".to_string(),
            location: self.location.clone(),
            healthy,
        }
    }
}

/// `url` with the password (user info after `:`, or a `pass`/`password` query parameter)
/// replaced by `***`.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if name == "pass" || name == "password" => {
                        format!("{name}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}
