//! Results coming back: an outcome completes a task, or fails its attempt (retried with
//! backoff while its retry policy allows, at once and without using up the policy when its
//! provider was lost), or fails it for good. Only the engine holding the task's lease
//! reports on it, and only on its current attempt: late and duplicate outcomes change
//! nothing. Queued tasks of methods that no engine offers within the grace period fail
//! with GZ2015.

use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::TaskOutcomes;
use gleitzeit_store::TaskStatus;
use tracing::warn;

use super::{Machine, Now, Step, WfKey, LOST_WORK_REQUEUES};

impl Machine {
    /// Outcomes reported by `engine`.
    pub(crate) fn outcomes(&self, engine: &str, batch: TaskOutcomes, now: Now) -> Step {
        let mut step = Step::default();
        for o in batch.outcomes {
            let Some((key, wf)) = self.wfs.get_key_value(o.workflow_id.as_str()) else {
                continue;
            };
            let Some(i) = wf.position(&o.task_id) else {
                continue;
            };
            if wf.info[i].engine.as_deref() != Some(engine) {
                // Only the engine holding the lease reports on a task (the hub stamps the
                // sender): anything else is forged or stale.
                warn!(workflow = %o.workflow_id, task = %o.task_id, from = %engine, "outcome from a component that does not hold the task; ignored");
                continue;
            }
            let Some(t) = step.record(self, key, i) else {
                continue;
            };
            if t.status != TaskStatus::Running || t.attempts != o.attempt {
                continue; // late or duplicate: the recorded result stays as it is
            }
            let attempts = t.attempts;
            let finished_at = if o.finished_at > 0 {
                o.finished_at
            } else {
                now.ms
            };
            let provider = Some(o.provider_id).filter(|p| !p.is_empty());
            let (status, result, error, retry_after) = match (o.result, o.error) {
                (Some(result), None) => (TaskStatus::Completed, Some(result), None, None),
                (_, error) => {
                    let error = error.unwrap_or_else(|| {
                        GzError::new(
                            ErrorCode::TaskFailed,
                            "provider sent neither result nor error",
                        )
                    });
                    match self.retry_delay(wf.info[i].retry(), attempts, &error) {
                        Some(delay) => (TaskStatus::Retrying, None, Some(error), Some(delay)),
                        None => (TaskStatus::Failed, None, Some(error), None),
                    }
                }
            };
            if let Some(t) = self.transition(&mut step, key, i, status, now) {
                t.provider_id = provider.map(Into::into);
                t.finished_at = Some(finished_at);
                t.error = error.and_then(|e| serde_json::to_value(e).ok());
                if result.is_some() {
                    t.result = result;
                }
            }
            if status == TaskStatus::Completed {
                self.fire_primes(&mut step, key, i, now);
            }
            if let Some(c) = step.change(key, i) {
                c.retry_after = retry_after;
            }
        }
        self.finalize(&mut step, now);
        step
    }

    /// The pause before another attempt of a task whose attempt `attempts` failed with
    /// `error`; `None` when it fails for good.
    fn retry_delay(
        &self,
        retry: &gleitzeit_workflow::RetryPolicy,
        attempts: u32,
        error: &GzError,
    ) -> Option<Duration> {
        // Work lost with its provider runs again without using up the retry policy, up to a
        // bound, so a task that kills every provider it meets still ends.
        let lost = error.is(ErrorCode::Disconnected)
            && attempts < retry.max_attempts.saturating_add(LOST_WORK_REQUEUES);
        if lost {
            return Some(Duration::ZERO);
        }
        let worth_retrying = error.retryable || error.is(ErrorCode::PythonException);
        (worth_retrying && retry.allows_another_attempt(attempts))
            .then(|| retry.delay_for_attempt(attempts, (self.jitter)()))
    }

    /// A retry's pause is over: the task is queued again (if it still waits for it).
    pub(super) fn retry_due(&self, step: &mut Step, key: &WfKey, i: usize, attempt: u32, now: Now) {
        let waiting = step
            .record(self, key, i)
            .is_some_and(|t| t.status == TaskStatus::Retrying && t.attempts == attempt);
        if waiting {
            self.transition(step, key, i, TaskStatus::Queued, now);
        }
    }

    /// Methods with queued tasks that no engine serves: how long they have waited, and
    /// how many tasks wait.
    pub(crate) fn unserved_waiting(&self, now: Now) -> Vec<(String, Duration, usize)> {
        let grace = self.settings.provider_grace;
        self.waiting_since
            .iter()
            .filter(|(m, _)| {
                self.method_seen
                    .get(*m)
                    .is_none_or(|t| now.at.duration_since(*t) > grace)
            })
            .map(|(m, since)| {
                let waited = now.at.duration_since((*since).max(self.started));
                (m.clone(), waited, self.queue.count(m))
            })
            .filter(|(_, _, n)| *n > 0)
            .collect()
    }

    /// The provider grace period.
    pub(crate) fn provider_grace(&self) -> Duration {
        self.settings.provider_grace
    }

    /// Fails the queued tasks of methods that no engine has offered within the grace
    /// period (GZ2015): a workflow must not wait forever for a provider that does not exist.
    /// The grace counts from when the method was first found waiting unserved (and never
    /// before this queue-manager's start), so tasks of a function that a service declares a
    /// moment later are not failed at once.
    pub(super) fn fail_unserved(&mut self, step: &mut Step, now: Now) {
        let grace = self.settings.provider_grace;
        if now.at.duration_since(self.started) < grace {
            return;
        }
        let queued = self.queue.methods();
        self.waiting_since.retain(|m, _| queued.contains(m));
        let mut unserved = Vec::new();
        for method in queued {
            let served = self
                .method_seen
                .get(&method)
                .is_some_and(|t| now.at.duration_since(*t) <= grace);
            if served {
                self.waiting_since.remove(&method);
                continue;
            }
            let since = *self.waiting_since.entry(method.clone()).or_insert(now.at);
            if now.at.duration_since(since.max(self.started)) >= grace {
                unserved.push(method);
            }
        }
        for method in unserved {
            let entries = self.queue.drain(&method);
            let what = gleitzeit_protocol::routing::describe(&method);
            let error = GzError::new(ErrorCode::NoProvider, format!("no provider serves {what}"))
                .with_hint(if what == method {
                    format!("start a provider for {method} (`gz status` lists what is registered)")
                } else {
                    format!(
                        "start a service declaring {what} (`gz functions list` shows what is declared)"
                    )
                })
            .with_retryable(false);
            warn!(%method, tasks = entries.len(), "failing queued tasks: no provider serves the method");
            let error = serde_json::to_value(&error).ok();
            for entry in entries {
                let (key, i) = (entry.wf.clone(), entry.task);
                let live = self
                    .wfs
                    .get(&key)
                    .is_some_and(|wf| wf.info[i].entry == Some(entry.seq));
                step.taken.push((method.clone(), entry));
                if !live || step.status(self, &key, i) != Some(TaskStatus::Queued) {
                    continue;
                }
                if let Some(t) = self.transition(step, &key, i, TaskStatus::Failed, now) {
                    t.error = error.clone();
                }
            }
        }
    }
}
