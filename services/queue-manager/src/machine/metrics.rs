//! The figures the life cycle yields, for the hub's `GET /metrics` (`docs/metrics.md`):
//! fed by [`super::Machine::apply_task`] (every task move), `add` and `drop_workflow`
//! (tasks coming into and leaving memory) and `commit` (finished workflows), and read as a
//! snapshot between two steps.
//!
//! Counters and histograms only grow; the gauges (queue depth, leases outstanding) come from
//! per-method task counts kept here move by move, so a scrape never walks the tasks.

use std::collections::HashMap;

use gleitzeit_component::metrics::{CounterVec, HistogramVec, MAX_SERIES, SECONDS};
use gleitzeit_protocol::metrics::MetricFamily;
use gleitzeit_store::{TaskRecord, TaskStatus, WorkflowStatus};

use super::status::Counts;

/// Counters, histograms and per-method task counts of one machine.
#[derive(Debug)]
pub(crate) struct Figures {
    tasks: CounterVec,
    retries: CounterVec,
    requeues: CounterVec,
    workflows: CounterVec,
    duration: HistogramVec,
    wait: HistogramVec,
    /// Tasks in memory by method and status (methods beyond [`MAX_SERIES`] as `other`).
    live: HashMap<String, Counts>,
}

impl Default for Figures {
    fn default() -> Self {
        Figures {
            tasks: CounterVec::new(
                "gleitzeit_tasks_total",
                "Tasks that reached a final state, by method and state.",
                &["method", "status"],
            ),
            retries: CounterVec::new(
                "gleitzeit_task_retries_total",
                "Failed attempts that are retried (task_retrying), by method.",
                &["method"],
            ),
            requeues: CounterVec::new(
                "gleitzeit_task_requeues_total",
                "Running attempts lost with their engine or provider and queued again without using up a retry, by method.",
                &["method"],
            ),
            workflows: CounterVec::new(
                "gleitzeit_workflows_total",
                "Workflows that reached a final state, by state.",
                &["status"],
            ),
            duration: HistogramVec::new(
                "gleitzeit_task_duration_seconds",
                "How long an attempt ran, from its lease to its outcome, by method.",
                &["method"],
                SECONDS,
            ),
            wait: HistogramVec::new(
                "gleitzeit_task_queue_wait_seconds",
                "How long a task waited in the queue before it was leased, by method.",
                &["method"],
                SECONDS,
            ),
            live: HashMap::new(),
        }
    }
}

impl Figures {
    /// A task came into memory (a new or resumed workflow).
    pub(crate) fn arrived(&mut self, t: &TaskRecord) {
        self.live_of(&t.method).add(t.status);
    }

    /// A task left memory (its workflow finished, or another queue-manager took it).
    pub(crate) fn left(&mut self, t: &TaskRecord) {
        self.live_of(&t.method).remove(t.status);
    }

    /// A task moved from `before` to `after`; `now_ms` is the wall clock of the step.
    pub(crate) fn moved(&mut self, before: &TaskRecord, after: &TaskRecord, now_ms: u64) {
        let (from, to) = (before.status, after.status);
        if from == to {
            return;
        }
        let method = &*after.method;
        self.live_of(method).moved(from, to);
        if to.is_terminal() {
            self.tasks.inc(&[method, to.as_str()]);
        }
        match (from, to) {
            (
                TaskStatus::Queued | TaskStatus::Pending | TaskStatus::Retrying,
                TaskStatus::Running,
            ) => {
                // Also a task made ready and handed out in one step (pending → running).
                if let (Some(queued), Some(started)) = (after.queued_at, after.started_at) {
                    self.wait.observe(&[method], seconds(queued, started));
                }
            }
            (TaskStatus::Running, TaskStatus::Queued) => self.requeues.inc(&[method]),
            (TaskStatus::Running, _) => {
                if to == TaskStatus::Retrying {
                    self.retries.inc(&[method]);
                }
                if to != TaskStatus::Cancelled {
                    if let Some(started) = after.started_at {
                        let ended = after.finished_at.unwrap_or(now_ms);
                        self.duration.observe(&[method], seconds(started, ended));
                    }
                }
            }
            _ => {}
        }
    }

    /// A workflow reached its final `status`.
    pub(crate) fn workflow_finished(&mut self, status: WorkflowStatus) {
        self.workflows.inc(&[status.as_str()]);
    }

    /// Tasks in memory by method (for the invariant check of the tests).
    #[cfg(test)]
    pub(crate) fn live(&self) -> &HashMap<String, Counts> {
        &self.live
    }

    /// Every family, with the gauges as of now (`workflows` in memory).
    pub(crate) fn families(&self, workflows: usize) -> Vec<MetricFamily> {
        let mut depth = MetricFamily::gauge(
            "gleitzeit_queue_depth",
            "Tasks queued and waiting for a lease, by method.",
        );
        let mut methods: Vec<(&String, &Counts)> = self.live.iter().collect();
        methods.sort_by(|a, b| a.0.cmp(b.0));
        let mut running = 0;
        for (method, counts) in methods {
            depth.push(
                &[("method", method.as_str())],
                counts.get(TaskStatus::Queued) as f64,
            );
            running += counts.get(TaskStatus::Running);
        }
        vec![
            self.tasks.family(),
            self.retries.family(),
            self.requeues.family(),
            self.workflows.family(),
            self.duration.family(),
            self.wait.family(),
            depth,
            MetricFamily::gauge(
                "gleitzeit_leases_outstanding",
                "Task attempts leased to engines and not yet answered (tasks running).",
            )
            .with(&[], running as f64),
            MetricFamily::gauge(
                "gleitzeit_workflows_active",
                "Unfinished workflows this queue-manager runs.",
            )
            .with(&[], workflows as f64),
        ]
    }

    /// The counts of `method` (of `other` once [`MAX_SERIES`] methods are known).
    fn live_of(&mut self, method: &str) -> &mut Counts {
        let key = if self.live.contains_key(method) || self.live.len() < MAX_SERIES {
            method
        } else {
            "other"
        };
        self.live.entry(key.to_string()).or_default()
    }
}

/// Seconds from `start` to `end` (ms since the epoch); 0 if the clock went back.
fn seconds(start: u64, end: u64) -> f64 {
    end.saturating_sub(start) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::metrics::SampleValue;

    fn record(method: &str, status: TaskStatus) -> TaskRecord {
        let mut t = TaskRecord::pending("w", "t", "t", method, 0);
        t.status = status;
        t
    }

    fn value(families: &[MetricFamily], name: &str, labels: &[(&str, &str)]) -> f64 {
        let f = families.iter().find(|f| f.name == name).expect(name);
        let s = f
            .samples
            .iter()
            .find(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .expect("sample");
        match &s.value {
            SampleValue::Value(v) => *v,
            SampleValue::Histogram(h) => h.count as f64,
        }
    }

    #[test]
    fn moves_become_counts_histograms_and_gauges() {
        let mut f = Figures::default();
        let pending = record("m", TaskStatus::Pending);
        f.arrived(&pending);
        let mut queued = record("m", TaskStatus::Queued);
        queued.queued_at = Some(1_000);
        f.moved(&pending, &queued, 1_000);
        let fams = f.families(1);
        assert_eq!(
            value(&fams, "gleitzeit_queue_depth", &[("method", "m")]),
            1.0
        );

        let mut running = queued.clone();
        running.status = TaskStatus::Running;
        running.started_at = Some(1_500);
        f.moved(&queued, &running, 1_500);
        let mut retrying = running.clone();
        retrying.status = TaskStatus::Retrying;
        f.moved(&running, &retrying, 3_500);
        let mut again = retrying.clone();
        again.status = TaskStatus::Queued;
        again.queued_at = Some(4_000);
        f.moved(&retrying, &again, 4_000);
        let mut done = again.clone();
        done.status = TaskStatus::Running;
        done.started_at = Some(4_000);
        f.moved(&again, &done, 4_000);
        let fams = f.families(1);
        assert_eq!(value(&fams, "gleitzeit_leases_outstanding", &[]), 1.0);
        assert_eq!(
            value(&fams, "gleitzeit_queue_depth", &[("method", "m")]),
            0.0
        );
        let mut completed = done.clone();
        completed.status = TaskStatus::Completed;
        completed.finished_at = Some(5_000);
        f.moved(&done, &completed, 5_000);
        f.left(&completed);
        f.workflow_finished(WorkflowStatus::Completed);

        let fams = f.families(0);
        let tasks = [("method", "m"), ("status", "completed")];
        assert_eq!(value(&fams, "gleitzeit_tasks_total", &tasks), 1.0);
        assert_eq!(
            value(&fams, "gleitzeit_task_retries_total", &[("method", "m")]),
            1.0
        );
        assert_eq!(
            value(
                &fams,
                "gleitzeit_workflows_total",
                &[("status", "completed")]
            ),
            1.0
        );
        assert_eq!(value(&fams, "gleitzeit_leases_outstanding", &[]), 0.0);
        assert_eq!(
            value(&fams, "gleitzeit_task_duration_seconds", &[("method", "m")]),
            2.0,
            "two attempts ran"
        );
        assert_eq!(
            value(
                &fams,
                "gleitzeit_task_queue_wait_seconds",
                &[("method", "m")]
            ),
            2.0,
            "two waits in the queue"
        );
        let wait = fams
            .iter()
            .find(|f| f.name == "gleitzeit_task_queue_wait_seconds")
            .map(|f| f.samples[0].value.clone());
        match wait {
            Some(SampleValue::Histogram(h)) => assert!((h.sum - 0.5).abs() < 1e-9, "{h:?}"),
            other => panic!("{other:?}"),
        }
        assert!(f.live()["m"].terminal() == 0, "nothing left in memory");
    }
}
