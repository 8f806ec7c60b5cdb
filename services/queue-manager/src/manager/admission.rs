//! Size limits on submitted workflows (GZ7012), checked before the expensive work.
//!
//! The task count is read off the raw JSON before it is turned into a spec, so a
//! 300,001-task submission is refused without building it; the size of the normalized spec
//! is measured by streaming it into a counter. The limit on bytes (32 MiB by default) keeps
//! every plan within one hub message (`planning.rs`).

use gleitzeit_protocol::errors::GzError;
use gleitzeit_protocol::limits::{json_size_within, too_large};
use gleitzeit_workflow::{DEFAULT_MAX_SPEC_BYTES, DEFAULT_MAX_TASKS};
use serde_json::Value;

/// How large a submitted workflow may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkflowLimits {
    /// Tasks in one workflow.
    pub max_tasks: usize,
    /// Bytes of the workflow's spec as JSON (raw and normalized).
    pub max_spec_bytes: usize,
}

impl Default for WorkflowLimits {
    fn default() -> Self {
        WorkflowLimits {
            max_tasks: DEFAULT_MAX_TASKS,
            max_spec_bytes: DEFAULT_MAX_SPEC_BYTES,
        }
    }
}

impl WorkflowLimits {
    /// Checks the spec as submitted: task count and size.
    ///
    /// # Errors
    ///
    /// GZ7012 naming the limit that was exceeded.
    pub fn check_raw(&self, spec: &Value) -> Result<(), GzError> {
        let tasks = spec
            .get("tasks")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        self.check_count(tasks)?;
        self.check_bytes(spec)
    }

    /// Checks a spec's number of tasks.
    ///
    /// # Errors
    ///
    /// GZ7012 when it is above [`WorkflowLimits::max_tasks`].
    pub fn check_count(&self, tasks: usize) -> Result<(), GzError> {
        if tasks > self.max_tasks {
            return Err(too_large(
                "the workflow",
                format!("{tasks} tasks"),
                format!("{} tasks", self.max_tasks),
            )
            .with_hint(
                "split the workflow into several smaller ones, or raise the queue-manager's --max-workflow-tasks",
            ));
        }
        Ok(())
    }

    /// Checks the size of a spec (the normalized one can be larger than the submitted one).
    ///
    /// # Errors
    ///
    /// GZ7012 when it is larger than [`WorkflowLimits::max_spec_bytes`].
    pub fn check_bytes(&self, spec: &Value) -> Result<(), GzError> {
        self.check_len(
            json_size_within(spec, self.max_spec_bytes).unwrap_or(self.max_spec_bytes + 1),
        )
    }

    /// [`WorkflowLimits::check_bytes`] for a spec already written as `bytes` of JSON text.
    pub fn check_len(&self, bytes: usize) -> Result<(), GzError> {
        if bytes > self.max_spec_bytes {
            return Err(too_large(
                "the workflow",
                format!("more than {} bytes of JSON", self.max_spec_bytes),
                format!("{} bytes", self.max_spec_bytes),
            )
            .with_hint(
                "move large data out of the parameters (files, references), split the workflow, or raise the queue-manager's --max-workflow-bytes (at most 32 MiB keeps plans within one hub message)",
            ));
        }
        Ok(())
    }
}

/// How many tasks a `workflow_submit` payload's spec lists, counted by a scan of its JSON
/// text that builds nothing (0 when it does not read as a submission: decoding reports
/// that).
pub fn count_tasks(payload: &str) -> usize {
    use serde::de::{IgnoredAny, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer};

    /// The length of a JSON array, its items skipped.
    #[derive(Default)]
    struct Count(usize);
    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Counting;
            impl<'de> Visitor<'de> for Counting {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a list of tasks")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(Counting)
        }
    }
    #[derive(Deserialize)]
    struct Spec {
        #[serde(default)]
        tasks: Count,
    }
    #[derive(Deserialize)]
    struct Submission {
        spec: Spec,
    }
    serde_json::from_str::<Submission>(payload).map_or(0, |s| s.spec.tasks.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::errors::ErrorCode;
    use serde_json::json;

    #[test]
    fn tasks_are_counted_from_the_text() {
        let payload = json!({ "workflow_id": "w", "spec": { "name": "w", "tasks": vec![json!({"id": "t", "parameters": {"a": [1, {"b": 2}]}}); 7] } });
        assert_eq!(count_tasks(&payload.to_string()), 7);
        assert_eq!(count_tasks(r#"{"spec": {"name": "w"}}"#), 0);
        assert_eq!(count_tasks("not json"), 0);
        assert_eq!(count_tasks(r#"{"spec": {"tasks": 5}}"#), 0);
    }

    #[test]
    fn too_many_tasks_or_bytes_are_gz7012() {
        let limits = WorkflowLimits {
            max_tasks: 2,
            max_spec_bytes: 200,
        };
        let tasks = |n: usize| json!({ "name": "w", "tasks": vec![json!({"id": "t"}); n] });
        assert!(limits.check_raw(&tasks(2)).is_ok());
        let err = limits.check_raw(&tasks(3)).err().map(|e| e.code);
        assert_eq!(err.as_deref(), Some(ErrorCode::TooLarge.as_str()));
        let big = json!({ "name": "x".repeat(300), "tasks": [] });
        let err = limits.check_raw(&big).err().map(|e| e.code);
        assert_eq!(err.as_deref(), Some(ErrorCode::TooLarge.as_str()));
    }
}
