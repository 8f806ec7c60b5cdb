//! The ranges of every number in a workflow that becomes a duration or a count, and the
//! default size limits of a workflow.
//!
//! The checks here run for YAML files (`gz validate`, `gz run`) and for specs that arrive as
//! JSON (a raw `workflow_submit`, a stored spec read back after a restart), so that a value
//! such as `timeout: 1e300` is refused with GZ7011 before anything turns it into a
//! [`Duration`]. `docs/workflows.md` lists the same ranges.

use std::time::Duration;

use crate::spec::{TaskSpec, WorkflowSpec};

/// A task's `timeout` is more than 0 and at most this many seconds (an hour).
pub const MAX_TASK_TIMEOUT_SECS: f64 = 3600.0;
/// A workflow's `timeout` is more than 0 and at most this many seconds (7 days).
pub const MAX_WORKFLOW_TIMEOUT_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// Bounds of `retry.max_attempts`.
pub const MAX_ATTEMPTS_RANGE: std::ops::RangeInclusive<u32> = 1..=10;
/// `retry.base_delay` and `retry.max_delay` are from 0 to this many seconds (a day).
pub const MAX_RETRY_DELAY_SECS: f64 = 86_400.0;
/// Default limit on the tasks of one workflow (the queue-manager's `--max-workflow-tasks`).
pub const DEFAULT_MAX_TASKS: usize = 200_000;
/// Default limit on the size of one workflow's normalized spec as JSON (the
/// queue-manager's `--max-workflow-bytes`): half the hub's 64 MiB message limit, so that a
/// plan (spec plus a part of the finished results) always fits in one message.
pub const DEFAULT_MAX_SPEC_BYTES: usize = 32 * 1024 * 1024;

/// A number outside its range: the field (as the YAML reader records it) and what is wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeIssue {
    /// The field: `timeout`, `retry.max_attempts`, `retry.base_delay`, `retry.max_delay`.
    pub field: &'static str,
    /// The message, without the task's name.
    pub message: String,
}

fn seconds_within(seconds: f64, max: f64, zero_allowed: bool) -> bool {
    seconds.is_finite() && (seconds > 0.0 || (zero_allowed && seconds == 0.0)) && seconds <= max
}

/// The workflow-level number out of range, if any.
pub fn workflow_range_issue(spec: &WorkflowSpec) -> Option<RangeIssue> {
    let timeout = spec.timeout?;
    (!seconds_within(timeout, MAX_WORKFLOW_TIMEOUT_SECS, false)).then(|| RangeIssue {
        field: "timeout",
        message: format!(
            "the workflow's `timeout` must be more than 0 and at most {MAX_WORKFLOW_TIMEOUT_SECS} seconds (7 days), not {timeout}"
        ),
    })
}

/// The numbers of one task that are out of range.
pub fn task_range_issues(task: &TaskSpec) -> Vec<RangeIssue> {
    let mut issues = Vec::new();
    if let Some(timeout) = task.timeout {
        if !seconds_within(timeout, MAX_TASK_TIMEOUT_SECS, false) {
            issues.push(RangeIssue {
                field: "timeout",
                message: format!(
                    "`timeout` must be more than 0 and at most 3600 seconds, not {timeout}"
                ),
            });
        }
    }
    let retry = &task.retry;
    if !MAX_ATTEMPTS_RANGE.contains(&retry.max_attempts) {
        issues.push(RangeIssue {
            field: "retry.max_attempts",
            message: format!(
                "`retry.max_attempts` must be from 1 to 10, not {}",
                retry.max_attempts
            ),
        });
    }
    for (field, seconds) in [
        ("retry.base_delay", retry.base_delay),
        ("retry.max_delay", retry.max_delay),
    ] {
        if !seconds_within(seconds, MAX_RETRY_DELAY_SECS, true) {
            issues.push(RangeIssue {
                field,
                message: format!(
                    "`{field}` must be from 0 to {MAX_RETRY_DELAY_SECS} seconds (a day), not {seconds}"
                ),
            });
        }
    }
    issues
}

/// The first number out of range anywhere in the spec, as `task: message` (for records
/// read back from a store, which are refused as a whole).
pub fn first_range_issue(spec: &WorkflowSpec) -> Option<String> {
    if let Some(issue) = workflow_range_issue(spec) {
        return Some(issue.message);
    }
    spec.tasks.iter().find_map(|t| {
        task_range_issues(t)
            .into_iter()
            .next()
            .map(|issue| format!("task `{}`: {}", t.id, issue.message))
    })
}

impl WorkflowSpec {
    /// The workflow's time limit, `None` when it has none or it is out of range.
    pub fn timeout_duration(&self) -> Option<Duration> {
        self.timeout
            .filter(|s| seconds_within(*s, MAX_WORKFLOW_TIMEOUT_SECS, false))
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
    }
}

impl TaskSpec {
    /// One attempt's time limit in milliseconds (at least 1), `None` when the task has none
    /// or it is out of range.
    pub fn timeout_millis(&self) -> Option<u64> {
        self.timeout
            .filter(|s| seconds_within(*s, MAX_TASK_TIMEOUT_SECS, false))
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::RetryPolicy;

    fn task(timeout: Option<f64>, retry: RetryPolicy) -> TaskSpec {
        TaskSpec {
            id: "t".into(),
            name: "t".into(),
            method: "python/execute".into(),
            protocol: String::new(),
            parameters: serde_json::json!({}),
            dependencies: Vec::new(),
            priority: Default::default(),
            timeout,
            retry,
            files: Default::default(),
            tolerate_failures: false,
            batch: None,
        }
    }

    #[test]
    fn poison_numbers_are_out_of_range_and_never_become_durations() {
        for bad in [1e300, 1e19, f64::NAN, f64::INFINITY, -1.0, 0.0, 3601.0] {
            let t = task(Some(bad), RetryPolicy::default());
            assert_eq!(task_range_issues(&t).len(), 1, "{bad}");
            assert_eq!(t.timeout_millis(), None);
        }
        let t = task(Some(0.0001), RetryPolicy::default());
        assert_eq!(t.timeout_millis(), Some(1));
        let retry = RetryPolicy {
            max_attempts: 0,
            base_delay: f64::NAN,
            max_delay: 1e300,
            ..RetryPolicy::default()
        };
        let fields: Vec<_> = task_range_issues(&task(None, retry))
            .into_iter()
            .map(|i| i.field)
            .collect();
        assert_eq!(
            fields,
            ["retry.max_attempts", "retry.base_delay", "retry.max_delay"]
        );
    }

    #[test]
    fn workflow_timeout_is_at_most_a_week() {
        let mut spec = WorkflowSpec {
            id: None,
            name: "w".into(),
            description: None,
            metadata: serde_json::json!({}),
            timeout: Some(1e19),
            on_failure: Default::default(),
            tasks: vec![task(None, RetryPolicy::default())],
            attachments: Default::default(),
        };
        assert!(first_range_issue(&spec).is_some());
        assert_eq!(spec.timeout_duration(), None);
        spec.timeout = Some(MAX_WORKFLOW_TIMEOUT_SECS);
        assert!(first_range_issue(&spec).is_none());
        assert_eq!(
            spec.timeout_duration(),
            Some(Duration::from_secs(7 * 24 * 3600))
        );
    }
}
