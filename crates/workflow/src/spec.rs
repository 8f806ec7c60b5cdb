//! The workflow model: what a workflow and its tasks are, after parsing.
//!
//! These types are the contract between the CLI (which parses YAML), the queue manager and
//! the dependency resolver, so all of them serialize to JSON. A spec produced by
//! [`crate::parse_workflow`] or [`crate::prepare_spec`] is normalized: every task has an id,
//! a name and a protocol, and `dependencies` lists task ids, including the ones implied by
//! `${task.field}` references in the parameters.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::attachments::{Attachment, FileRef};

/// A workflow: named tasks and the dependencies between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowSpec {
    /// The workflow's id if the file gave one; the queue manager assigns one otherwise.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form data the user attached; not interpreted.
    #[serde(default = "empty_object")]
    pub metadata: Value,
    /// Seconds the whole workflow may run before it is failed.
    #[serde(default)]
    pub timeout: Option<f64>,
    #[serde(default)]
    pub on_failure: OnFailure,
    pub tasks: Vec<TaskSpec>,
    /// The contents of the files tasks name, by digest (`sha256:<hex>`), each once however
    /// many tasks name it; filled in at submit by `gz` and the SDK
    /// ([`crate::attachments`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attachments: BTreeMap<String, Attachment>,
}

/// One unit of work: a method call with parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: String,
    /// Display name; defaults to the id. References and dependencies may use it.
    #[serde(default)]
    pub name: String,
    /// The method to call, e.g. `llm/chat` or `python/execute`.
    pub method: String,
    /// The protocol the method belongs to, e.g. `llm/v1`; defaults from the method.
    #[serde(default)]
    pub protocol: String,
    /// The method's parameters (a JSON object), possibly holding `${task.path}` references.
    #[serde(
        default = "crate::text_parameters::default_parameters",
        deserialize_with = "crate::text_parameters::parameters",
        serialize_with = "crate::text_parameters::write_parameters",
        alias = "params"
    )]
    pub parameters: Value,
    /// Ids of the tasks that must complete first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
    #[serde(default, skip_serializing_if = "Priority::is_default")]
    pub priority: Priority,
    /// Seconds one attempt may run (more than 0, at most 3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// (Written only when it is not the default: a spec of 100,000 tasks is ~10 MB
    /// shorter as JSON, for the store, the hub and the resolver.)
    #[serde(default, skip_serializing_if = "RetryPolicy::is_default")]
    pub retry: RetryPolicy,
    /// The files this task names, by the path its parameters give: where their content is
    /// in the workflow's `attachments`, or why it could not be read at submit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileRef>,
    /// Runs once its dependencies are finished, whether they completed or not (an
    /// aggregation step after a batch: `${<template>.results}` gives it every file's result
    /// or error). Without it a failed dependency skips the task.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tolerate_failures: bool,
    /// Fan out over a list from an earlier task's result ([`crate::fanout`]): this task is
    /// then a template that makes one task per item at run time and joins their results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<crate::fanout::FanOut>,
}

impl WorkflowSpec {
    /// The spec as JSON with every task's settings written out, the defaults too: what a
    /// person is shown (`gz validate --explain`, the hub's `POST /validate`). Written for
    /// the store or the wire, a spec leaves a task's default retry policy, priority and
    /// timeout and its empty dependencies out (reading fills them in again).
    pub fn explained(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        let tasks = value.get_mut("tasks").and_then(Value::as_array_mut);
        for (written, task) in tasks.into_iter().flatten().zip(&self.tasks) {
            if let Some(fields) = written.as_object_mut() {
                let settings = [
                    ("dependencies", serde_json::to_value(&task.dependencies)),
                    ("priority", serde_json::to_value(task.priority)),
                    ("timeout", serde_json::to_value(task.timeout)),
                    ("retry", serde_json::to_value(&task.retry)),
                ];
                for (key, setting) in settings {
                    fields.insert(key.into(), setting.unwrap_or(Value::Null));
                }
            }
        }
        value
    }

    /// Drops every task's parameters (`null`), for a holder that keeps the spec as JSON text
    /// elsewhere and never reads them again: for a 100,000-task
    /// workflow the parameters as trees of values are ~60 MB. Only the parameters go; the
    /// scheduling facts (ids, methods, dependencies, priorities, retries, timeouts, files,
    /// fan-outs) stay.
    pub fn forget_parameters(&mut self) {
        for task in &mut self.tasks {
            task.parameters = Value::Null;
        }
    }
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// What happens to the rest of a workflow when a task fails for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// The failed task's dependents are skipped, the other tasks run, and the workflow ends
    /// `failed`.
    #[default]
    Fail,
    /// The same, but the workflow ends `completed`.
    Continue,
}

/// How urgently a task should be scheduled: `Low < Normal < High < Urgent`.
///
/// In YAML a priority is one of the words `low`, `normal`, `high`, `urgent`, or an integer
/// where **larger means more urgent**: `1` = low, `2` = normal, `3` = high, `4` = urgent.
/// `0` (or less) is read as low and anything above `4` as urgent, each with a warning.
/// (The original Python version mapped `1` to high and `3` to low while its own examples used
/// `3` for high; this rule follows the examples.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    /// Whether it is the default, `normal` (which a spec need not write).
    pub fn is_default(&self) -> bool {
        *self == Priority::default()
    }

    /// Reads a priority word, ignoring case.
    pub fn from_word(word: &str) -> Option<Priority> {
        match word.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Priority::Low),
            "normal" => Some(Priority::Normal),
            "high" => Some(Priority::High),
            "urgent" => Some(Priority::Urgent),
            _ => None,
        }
    }

    /// Maps an integer level (see the type's documentation); the flag is `false` when the
    /// level was outside `1..=4` and had to be clamped.
    pub fn from_level(level: i64) -> (Priority, bool) {
        match level {
            1 => (Priority::Low, true),
            2 => (Priority::Normal, true),
            3 => (Priority::High, true),
            4 => (Priority::Urgent, true),
            l if l < 1 => (Priority::Low, false),
            _ => (Priority::Urgent, false),
        }
    }

    /// The integer level of this priority (1 = low … 4 = urgent).
    pub fn level(self) -> u8 {
        match self {
            Priority::Low => 1,
            Priority::Normal => 2,
            Priority::High => 3,
            Priority::Urgent => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

impl<'de> Deserialize<'de> for Priority {
    /// Accepts the words and the integer levels, as the YAML dialect does.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Word(String),
            Level(i64),
        }
        match Repr::deserialize(deserializer)? {
            Repr::Word(word) => Priority::from_word(&word).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown priority `{word}` (expected low, normal, high or urgent)"
                ))
            }),
            Repr::Level(level) => Ok(Priority::from_level(level).0),
        }
    }
}

/// The shape of the pause between attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    /// `base_delay * 2^(attempt - 1)`
    #[default]
    Exponential,
    /// `base_delay * attempt`
    Linear,
    /// `base_delay`
    Fixed,
}

impl Backoff {
    pub fn from_word(word: &str) -> Option<Backoff> {
        match word.trim().to_ascii_lowercase().as_str() {
            "exponential" => Some(Backoff::Exponential),
            "linear" => Some(Backoff::Linear),
            "fixed" => Some(Backoff::Fixed),
            _ => None,
        }
    }
}

/// How often and how patiently a failed task is tried again.
///
/// A task without a `retry:` block runs once ([`RetryPolicy::default`], `max_attempts: 1`);
/// a `retry:` block starts from [`RetryPolicy::retry_block_default`] (`max_attempts: 3`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in total, including the first (1..=10).
    pub max_attempts: u32,
    pub backoff: Backoff,
    /// Seconds before the first retry.
    pub base_delay: f64,
    /// Upper bound on any single pause, in seconds.
    pub max_delay: f64,
    /// Randomize each pause to between half and all of its computed length.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff: Backoff::Exponential,
            base_delay: 1.0,
            max_delay: 300.0,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    /// Whether it is [`RetryPolicy::default`] (one attempt), which a spec need not write.
    pub fn is_default(&self) -> bool {
        *self == RetryPolicy::default()
    }

    /// The policy a `retry:` block starts from before its keys are applied.
    pub fn retry_block_default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        }
    }

    /// Whether another attempt may follow the (1-based) attempt that just failed.
    pub fn allows_another_attempt(&self, failed_attempt: u32) -> bool {
        failed_attempt < self.max_attempts
    }

    /// The pause before retrying, after the (1-based) `attempt` failed.
    ///
    /// The backoff's raw delay is capped at `max_delay`; with `jitter` it is then scaled to
    /// `delay * (0.5 + random_unit / 2)`, i.e. between half and all of it. `random_unit` is a
    /// number in `[0, 1)` supplied by the caller, so this function stays deterministic; values
    /// outside that range are clamped. Attempt `0` is treated as `1`.
    pub fn delay_for_attempt(&self, attempt: u32, random_unit: f64) -> Duration {
        let attempt = attempt.max(1);
        let base = finite_non_negative(self.base_delay);
        let cap = finite_non_negative(self.max_delay);
        let raw = match self.backoff {
            Backoff::Fixed => base,
            Backoff::Linear => base * f64::from(attempt),
            Backoff::Exponential => {
                let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX).min(1023);
                base * 2f64.powi(exponent)
            }
        };
        let mut delay = raw.min(cap);
        if self.jitter {
            let unit = if random_unit.is_finite() {
                random_unit.clamp(0.0, 1.0)
            } else {
                0.0
            };
            delay *= 0.5 + unit / 2.0;
        }
        Duration::try_from_secs_f64(delay).unwrap_or(Duration::ZERO)
    }
}

fn finite_non_negative(seconds: f64) -> f64 {
    if seconds.is_finite() && seconds > 0.0 {
        seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff, jitter: bool) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            backoff,
            base_delay: 2.0,
            max_delay: 10.0,
            jitter,
        }
    }

    #[test]
    fn exponential_delay_doubles_and_is_capped() {
        let p = policy(Backoff::Exponential, false);
        let secs: Vec<f64> = (1..=5)
            .map(|a| p.delay_for_attempt(a, 0.0).as_secs_f64())
            .collect();
        assert_eq!(secs, vec![2.0, 4.0, 8.0, 10.0, 10.0]);
        assert_eq!(p.delay_for_attempt(u32::MAX, 0.0), Duration::from_secs(10));
    }

    #[test]
    fn linear_and_fixed_delays() {
        let linear = policy(Backoff::Linear, false);
        assert_eq!(linear.delay_for_attempt(3, 0.9), Duration::from_secs(6));
        let fixed = policy(Backoff::Fixed, false);
        assert_eq!(fixed.delay_for_attempt(4, 0.9), Duration::from_secs(2));
        assert_eq!(fixed.delay_for_attempt(0, 0.9), Duration::from_secs(2));
    }

    #[test]
    fn jitter_scales_between_half_and_all() {
        let p = policy(Backoff::Exponential, true);
        assert_eq!(p.delay_for_attempt(2, 0.0), Duration::from_secs(2));
        assert_eq!(p.delay_for_attempt(2, 0.5), Duration::from_secs(3));
        assert!(p.delay_for_attempt(2, 0.999_999) < Duration::from_secs(4));
        assert_eq!(p.delay_for_attempt(2, f64::NAN), Duration::from_secs(2));
        assert_eq!(p.delay_for_attempt(2, 7.0), Duration::from_secs(4));
    }

    #[test]
    fn retry_defaults_depend_on_the_block() {
        assert_eq!(RetryPolicy::default().max_attempts, 1);
        assert!(!RetryPolicy::default().allows_another_attempt(1));
        let block = RetryPolicy::retry_block_default();
        assert_eq!(block.max_attempts, 3);
        assert!(block.allows_another_attempt(2));
        assert!(!block.allows_another_attempt(3));
    }

    #[test]
    fn priorities_order_and_levels() {
        assert!(Priority::Low < Priority::Normal);
        assert!(Priority::High < Priority::Urgent);
        assert_eq!(Priority::from_level(3), (Priority::High, true));
        assert_eq!(Priority::from_level(0), (Priority::Low, false));
        assert_eq!(Priority::from_level(9), (Priority::Urgent, false));
        let p: Priority = serde_json::from_str("\"urgent\"").unwrap_or_default();
        assert_eq!(p, Priority::Urgent);
        let p: Priority = serde_json::from_str("1").unwrap_or_default();
        assert_eq!(p, Priority::Low);
        assert_eq!(
            serde_json::to_string(&Priority::High).unwrap_or_default(),
            "\"high\""
        );
    }
}
