//! Metrics on the wire: what a component answers to the hub's `metrics` request.
//!
//! A [`MetricsSnapshot`] is a list of [`MetricFamily`]s, each a Prometheus-style family
//! (name, help, kind) with its samples. The hub gathers one snapshot from each of its
//! components, labels every sample with the component's id and type, and renders the whole
//! lot in the Prometheus text format at `GET /metrics` (`docs/metrics.md`). Components never
//! render text themselves: the snapshot is typed JSON, so the hub can check names, labels
//! and histograms before anything reaches a scraper.
//!
//! Conventions (as in Prometheus): names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
//! `[a-zA-Z_][a-zA-Z0-9_]*` and do not start with `__`; counters end in `_total`; a
//! histogram's `buckets` are cumulative (`count` of observations ≤ `le`), sorted by `le`,
//! without the `+Inf` bucket (that is `count`). JSON has no NaN or infinity: a value that
//! is not finite cannot be sent.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Reply to `metrics`: every metric family a component keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MetricsSnapshot {
    /// The families, in any order; a name appears once.
    #[serde(default)]
    pub families: Vec<MetricFamily>,
}

/// What kind of figure a family holds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// Only goes up (restarts at 0 when the component restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations counted into fixed buckets, with their sum and count.
    Histogram,
}

/// One metric family: a name, its meaning, its kind and its samples (one per label set).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct MetricFamily {
    /// Prometheus name, e.g. `gleitzeit_tasks_total`.
    pub name: String,
    /// What it measures (the `# HELP` line).
    #[serde(default)]
    pub help: String,
    /// Counter, gauge or histogram.
    pub kind: MetricKind,
    /// One sample per label set; values for counters and gauges, histograms for histograms.
    #[serde(default)]
    pub samples: Vec<Sample>,
}

/// One sample: its labels and a value or a histogram.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Sample {
    /// Label names and values (the hub adds `component` and `component_type`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `{"value": number}` or `{"histogram": {...}}`.
    #[serde(flatten)]
    pub value: SampleValue,
}

/// The figure of a sample.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum SampleValue {
    /// A counter's or gauge's value.
    Value(f64),
    /// A histogram's buckets, sum and count.
    Histogram(HistogramValue),
}

/// A histogram: cumulative bucket counts by upper bound, the sum and count of every
/// observation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct HistogramValue {
    /// `[le, observations ≤ le]`, `le` ascending, counts not decreasing; no `+Inf` bucket.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of every observation.
    pub sum: f64,
    /// Number of observations (the `+Inf` bucket).
    pub count: u64,
}

impl HistogramValue {
    /// Whether the buckets are well formed: finite, strictly ascending bounds; counts that
    /// never decrease and never exceed `count`; a finite sum.
    pub fn is_consistent(&self) -> bool {
        let ascending = self
            .buckets
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
        let finite = self.sum.is_finite() && self.buckets.iter().all(|(le, _)| le.is_finite());
        let within = self.buckets.last().is_none_or(|(_, n)| *n <= self.count);
        ascending && finite && within
    }
}

impl MetricFamily {
    /// An empty family.
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricKind) -> Self {
        MetricFamily {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// An empty counter family.
    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricKind::Counter)
    }

    /// An empty gauge family.
    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricKind::Gauge)
    }

    /// An empty histogram family.
    pub fn histogram(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricKind::Histogram)
    }

    /// Adds a value sample with these labels (a value that is not finite is left out: JSON
    /// cannot carry it).
    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) {
        if value.is_finite() {
            self.samples.push(Sample {
                labels: label_map(labels),
                value: SampleValue::Value(value),
            });
        }
    }

    /// The family with one more value sample.
    pub fn with(mut self, labels: &[(&str, &str)], value: f64) -> Self {
        self.push(labels, value);
        self
    }

    /// Adds a histogram sample with these labels.
    pub fn push_histogram(&mut self, labels: &[(&str, &str)], histogram: HistogramValue) {
        self.samples.push(Sample {
            labels: label_map(labels),
            value: SampleValue::Histogram(histogram),
        });
    }
}

fn label_map(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Whether `name` is a valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Whether `name` is a valid Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`, not starting
/// with the reserved `__`).
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_snapshot_reads_as_documented() {
        let mut tasks = MetricFamily::counter("gleitzeit_tasks_total", "Tasks finished.");
        tasks.push(&[("method", "llm/chat"), ("status", "completed")], 3.0);
        tasks.push(&[], f64::NAN);
        let mut wait = MetricFamily::histogram("wait_seconds", "Wait.");
        wait.push_histogram(
            &[],
            HistogramValue {
                buckets: vec![(0.1, 1), (1.0, 2)],
                sum: 0.6,
                count: 3,
            },
        );
        let snapshot = MetricsSnapshot {
            families: vec![tasks, wait],
        };
        let text = serde_json::to_value(&snapshot).expect("json");
        assert_eq!(
            text,
            json!({"families": [
                {"name": "gleitzeit_tasks_total", "help": "Tasks finished.", "kind": "counter",
                 "samples": [{"labels": {"method": "llm/chat", "status": "completed"}, "value": 3.0}]},
                {"name": "wait_seconds", "help": "Wait.", "kind": "histogram",
                 "samples": [{"histogram": {"buckets": [[0.1, 1], [1.0, 2]], "sum": 0.6, "count": 3}}]}
            ]}),
            "a value that is not finite is left out"
        );
        let back: MetricsSnapshot = serde_json::from_value(text).expect("reads back");
        assert_eq!(back, snapshot);
        let bad =
            json!({"families": [{"name": "x", "kind": "gauge", "samples": [{"value": "high"}]}]});
        assert!(serde_json::from_value::<MetricsSnapshot>(bad).is_err());
    }

    #[test]
    fn names_and_histograms_are_checked_as_prometheus_does() {
        assert!(is_metric_name("gleitzeit_tasks_total"));
        assert!(is_metric_name("a:b_c9"));
        assert!(!is_metric_name("9lives"));
        assert!(!is_metric_name("with-dash"));
        assert!(!is_metric_name(""));
        assert!(is_label_name("method"));
        assert!(!is_label_name("__name__"));
        assert!(!is_label_name("a:b"));
        let ok = HistogramValue {
            buckets: vec![(0.1, 1), (1.0, 1)],
            sum: 2.0,
            count: 2,
        };
        assert!(ok.is_consistent());
        let unsorted = HistogramValue {
            buckets: vec![(1.0, 1), (0.1, 1)],
            ..ok.clone()
        };
        assert!(!unsorted.is_consistent());
        let decreasing = HistogramValue {
            buckets: vec![(0.1, 2), (1.0, 1)],
            ..ok.clone()
        };
        assert!(!decreasing.is_consistent());
        let beyond_count = HistogramValue { count: 0, ..ok };
        assert!(!beyond_count.is_consistent());
    }
}
