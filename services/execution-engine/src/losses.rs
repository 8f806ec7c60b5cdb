//! What the engine does when work goes missing: a provider that leaves (its in-flight
//! tasks fail as retryable, so they run again), a provider whose held-task report lacks an
//! attempt twice in a row, a task far past its time limit (the watchdog, GZ2002), and the
//! engine's own held-task reports to each queue-manager.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::limits::{deadline_after, duration_from_millis_capped};
use gleitzeit_protocol::payloads::{HeldTask, HeldTasks, TaskOutcome, TaskRef};
use gleitzeit_protocol::Target;
use serde_json::Value;
use tracing::warn;

use crate::{outcome_err, Engine};

/// How long a queue-manager with nothing held here is still sent (empty) reports.
const IDLE_REPORT_EXPIRY: Duration = Duration::from_secs(60);
/// The most queue-managers with nothing held here that are remembered at once.
const MAX_IDLE_QUEUE_MANAGERS: usize = 64;

impl Engine {
    /// A provider left: its in-flight tasks fail as retryable "lost" so they run again.
    pub(crate) fn provider_lost(&mut self, id: &str) {
        if self.providers.remove(id).is_none() {
            return;
        }
        self.providers_version += 1;
        let lost: Vec<TaskRef> = self
            .dispatched
            .iter()
            .filter(|(_, d)| d.provider == id)
            .map(|(k, _)| k.clone())
            .collect();
        if !lost.is_empty() {
            warn!(provider = %id, tasks = lost.len(), "provider left with tasks in flight; they will run again");
        }
        let outcomes: Vec<TaskOutcome> = lost
            .iter()
            .filter_map(|k| self.dispatched.get(k).map(|d| (k, d.attempt)))
            .map(|(k, attempt)| {
                let err = GzError::new(
                    ErrorCode::Disconnected,
                    format!("provider {id} left while running the task"),
                );
                outcome_err(&k.workflow_id, &k.task_id, attempt, err)
            })
            .collect();
        // `forward` routes these to the owning queue-manager and drops the entries.
        self.forward(outcomes);
    }
    /// A provider reported what it holds: attempts it no longer has (twice in a row) were
    /// lost on the way and are reported to their queue-manager as lost (run again).
    pub(crate) fn provider_holds(&mut self, provider: &str, held: HeldTasks) {
        let held: HashSet<(String, String, u32)> = held
            .tasks
            .into_iter()
            .map(|t| (t.workflow_id, t.task_id, t.attempt))
            .collect();
        let mut lost = Vec::new();
        for (k, d) in self
            .dispatched
            .iter_mut()
            .filter(|(_, d)| d.provider == provider)
        {
            if held.contains(&(k.workflow_id.clone(), k.task_id.clone(), d.attempt)) {
                d.missed = 0;
            } else {
                d.missed += 1;
                if d.missed >= 2 {
                    lost.push(outcome_err(
                        &k.workflow_id,
                        &k.task_id,
                        d.attempt,
                        GzError::new(
                            ErrorCode::Disconnected,
                            format!("provider {provider} no longer holds the task"),
                        ),
                    ));
                }
            }
        }
        if !lost.is_empty() {
            warn!(
                provider,
                tasks = lost.len(),
                "tasks lost on the way to or from a provider; they will run again"
            );
            self.forward(lost);
        }
    }

    /// Tells each queue-manager which of its tasks this engine still holds. One that has
    /// nothing here is told so for [`IDLE_REPORT_EXPIRY`], then forgotten (at most
    /// [`MAX_IDLE_QUEUE_MANAGERS`] are remembered), so lease replies naming many
    /// queue-managers never become a permanent flood of reports.
    pub(crate) fn report_held(&mut self) {
        let mut by_qm: HashMap<String, Vec<HeldTask>> = HashMap::new();
        for (k, d) in &self.dispatched {
            by_qm
                .entry(d.queue_manager.clone())
                .or_default()
                .push(HeldTask {
                    workflow_id: k.workflow_id.clone(),
                    task_id: k.task_id.clone(),
                    attempt: d.attempt,
                });
        }
        let now = Instant::now();
        for qm in by_qm.keys() {
            self.queue_managers.insert(qm.clone(), now);
        }
        self.queue_managers.retain(|qm, seen| {
            by_qm.contains_key(qm) || now.saturating_duration_since(*seen) < IDLE_REPORT_EXPIRY
        });
        let mut idle: Vec<(Instant, String)> = self
            .queue_managers
            .iter()
            .filter(|(qm, _)| !by_qm.contains_key(*qm))
            .map(|(qm, seen)| (*seen, qm.clone()))
            .collect();
        if idle.len() > MAX_IDLE_QUEUE_MANAGERS {
            idle.sort();
            let excess = idle.len() - MAX_IDLE_QUEUE_MANAGERS;
            for (_, qm) in idle.drain(..excess) {
                self.queue_managers.remove(&qm);
            }
        }
        for (_, qm) in idle {
            by_qm.insert(qm, Vec::new());
        }
        for (qm, tasks) in by_qm {
            let payload = serde_json::to_value(HeldTasks { tasks }).unwrap_or(Value::Null);
            let _ = self
                .client
                .emit(Target::Component(qm), events::TASKS_HELD, payload);
        }
    }

    /// Backs up provider-side timeouts: a task far past its limit fails with GZ2002.
    pub(crate) fn watchdog(&mut self) {
        let now = Instant::now();
        let late: Vec<TaskRef> = self
            .dispatched
            .iter()
            .filter(|(_, d)| d.deadline.is_some_and(|t| t <= now))
            .map(|(k, _)| k.clone())
            .collect();
        if late.is_empty() {
            return;
        }
        let mut outcomes = Vec::new();
        let mut cancels: HashMap<String, Vec<TaskRef>> = HashMap::new();
        for k in late {
            if let Some(d) = self.dispatched.get(&k) {
                warn!(task = %k.task_id, "provider did not report within the task's time limit");
                outcomes.push(outcome_err(
                    &k.workflow_id,
                    &k.task_id,
                    d.attempt,
                    GzError::new(
                        ErrorCode::TaskTimeout,
                        "no outcome within the task's time limit",
                    ),
                ));
                cancels
                    .entry(d.provider.clone())
                    .or_default()
                    .push(k.clone());
            }
        }
        for (pid, tasks) in cancels {
            self.send_cancel(pid, tasks);
        }
        self.forward(outcomes);
    }
}

/// When the watchdog gives up on a task: its time limit for each task that may wait ahead
/// of it at the provider (the prefetch), plus a grace; `None` when that is beyond any
/// representable instant (outside numbers never panic the engine).
pub(crate) fn watchdog_deadline(now: Instant, timeout_ms: u64, prefetch: u32) -> Option<Instant> {
    let limit = duration_from_millis_capped(timeout_ms)
        .checked_mul(prefetch.saturating_add(1))?
        .checked_add(Duration::from_secs(5))?;
    deadline_after(now, limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_timeouts_and_prefetch_never_overflow_the_watchdog() {
        let now = Instant::now();
        assert!(watchdog_deadline(now, u64::MAX, u32::MAX).is_some_and(|d| d > now));
        assert_eq!(
            watchdog_deadline(now, 1000, 1),
            Some(now + Duration::from_secs(7))
        );
    }
}
