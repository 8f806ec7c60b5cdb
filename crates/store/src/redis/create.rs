//! Creating a workflow: the checks made before any write, the staging of a big workflow's
//! tasks under the creator's token, and the one script that creates the workflow (see
//! "Atomicity" in the module docs of `redis`).

use super::*;

impl RedisStore {
    /// Stores a new workflow, its tasks and (when given) its idempotency key: one script,
    /// after the tasks of a workflow of more than [`STAGE_CHUNK`] tasks were staged.
    pub(super) fn create(
        &self,
        idempotency: Option<&Idempotency<'_>>,
        wf: &WorkflowRecord,
        tasks: &[TaskRecord],
    ) -> Result<Creation, StoreError> {
        crate::tasks_belong_to(wf, tasks)?;
        let mut seen = HashSet::with_capacity(tasks.len());
        if let Some(dup) = tasks.iter().find(|t| !seen.insert(&*t.task_id)) {
            return Err(StoreError::Invalid(format!(
                "duplicate task `{}/{}`",
                dup.workflow_id, dup.task_id
            )));
        }
        drop(seen);
        let started = Instant::now();
        let token = create_token();
        let staged = if tasks.len() > STAGE_CHUNK {
            self.stage_tasks(&token, tasks)?;
            tasks.len()
        } else {
            0
        };
        let mut invocation = self.create.prepare_invoke();
        let (key, fingerprint) = idempotency.map_or(("", ""), |i| (i.key, i.fingerprint));
        invocation
            .arg(&self.prefix)
            .arg(&token)
            .arg(key)
            .arg(fingerprint)
            .arg(staged);
        encode_workflow(wf)?.push_args(&mut invocation);
        if staged == 0 {
            for task in tasks {
                invocation.arg(&*task.task_id).arg(encode_task(task)?);
            }
        }
        let outcome: Result<(i64, String), StoreError> = self.call(|conn| {
            invocation
                .invoke(conn)
                .map_err(op("create workflow script"))
        });
        let (outcome, workflow_id) = match outcome {
            Ok(reply) => reply,
            Err(e) => {
                if staged > 0 {
                    self.drop_staged(&token);
                }
                return Err(e);
            }
        };
        match outcome {
            0 => {
                tracing::debug!(
                    workflow_id = %wf.id,
                    tasks = tasks.len(),
                    staged = staged > 0,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "stored new workflow"
                );
                Ok(Creation::Created)
            }
            1 => Err(StoreError::AlreadyExists { id: wf.id.clone() }),
            2 => Ok(Creation::Existing { workflow_id }),
            3 => Err(StoreError::IdempotencyConflict {
                key: key.to_string(),
                workflow_id,
            }),
            4 => Err(StoreError::Unavailable(format!(
                "Redis at {}: the staged tasks of workflow `{}` expired or were evicted before \
                 it was created; nothing was stored",
                self.location, wf.id
            ))),
            other => Err(StoreError::backend(
                "create workflow script",
                format!("unexpected reply {other}"),
            )),
        }
    }

    /// Writes `tasks` to the staging keys of `token`, [`STAGE_CHUNK`] per call; on failure
    /// deletes what was staged (best effort: the keys expire anyway).
    fn stage_tasks(&self, token: &str, tasks: &[TaskRecord]) -> Result<(), StoreError> {
        for chunk in tasks.chunks(STAGE_CHUNK) {
            if let Err(e) = self.stage_chunk(token, chunk) {
                self.drop_staged(token);
                return Err(e);
            }
        }
        Ok(())
    }

    /// One call of [`LUA_STAGE`]: `chunk` joins the staging keys of `token`, whose time to
    /// live starts again.
    fn stage_chunk(&self, token: &str, chunk: &[TaskRecord]) -> Result<(), StoreError> {
        let mut invocation = self.stage.prepare_invoke();
        invocation
            .arg(&self.prefix)
            .arg(token)
            .arg(STAGE_TTL.as_millis() as u64);
        for task in chunk {
            invocation.arg(&*task.task_id).arg(encode_task(task)?);
        }
        self.call(|conn| {
            invocation
                .invoke::<u64>(conn)
                .map_err(op("stage tasks script"))
        })
        .map(drop)
    }

    /// Deletes the staging keys of `token`, ignoring failure (they expire after
    /// [`STAGE_TTL`]).
    fn drop_staged(&self, token: &str) {
        let keys = [self.key("stagetasks", token), self.key("stageorder", token)];
        let dropped = self.call(|conn| {
            redis::cmd("DEL")
                .arg(&keys[..])
                .query::<u64>(conn)
                .map_err(op("delete staged tasks"))
        });
        if let Err(e) = dropped {
            tracing::warn!(error = %e, "could not delete staged tasks; they expire by themselves");
        }
    }
}

/// A token unique to one `create_workflow` call (process, time, counter).
fn create_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
