//! A component's own figures, kept where the work happens and handed to the hub as a
//! [`MetricsSnapshot`] when it asks (`metrics`, answered by [`answer`]).
//!
//! No global registry: each service keeps a few [`CounterVec`]s and [`HistogramVec`]s in
//! the state it already owns (the single-threaded component loop, or under a lock it
//! already takes), so recording is a short search among a handful of label sets and an
//! addition, without atomics or allocation once a label set exists. Gauges are not kept at
//! all: they are read from the service's state when the snapshot is made.
//!
//! Label sets are bounded: a vector holds at most [`MAX_SERIES`] of them, and further new
//! ones are counted under the label value `other` (a workflow naming ten thousand methods
//! cannot flood the hub or Prometheus).

use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::metrics::{HistogramValue, MetricFamily, MetricsSnapshot};
use gleitzeit_protocol::{Envelope, Role};

/// Most label sets one vector keeps; beyond, new ones are counted as `other`.
pub const MAX_SERIES: usize = 500;

/// Bucket bounds for durations in seconds, from 5 ms to 10 minutes.
pub const SECONDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Observations counted into fixed buckets.
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative): `counts[i]` ≤ `bounds[i]`, above the one
    /// before.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// Counts one observation (one that is not finite, or negative, is ignored).
    pub fn observe(&mut self, value: f64) {
        if !value.is_finite() || value < 0.0 {
            return;
        }
        if let Some(i) = self.bounds.iter().position(|le| value <= *le) {
            self.counts[i] += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The histogram as the wire has it (cumulative buckets).
    pub fn value(&self) -> HistogramValue {
        let mut below = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&self.counts)
            .map(|(le, n)| {
                below += n;
                (*le, below)
            })
            .collect();
        HistogramValue {
            buckets,
            sum: self.sum,
            count: self.count,
        }
    }
}

/// Series of one family by label values, in the order they first appeared.
#[derive(Debug, Clone)]
struct Series<T> {
    labels: &'static [&'static str],
    series: Vec<(Vec<String>, T)>,
}

impl<T> Series<T> {
    fn new(labels: &'static [&'static str]) -> Self {
        Series {
            labels,
            series: Vec::new(),
        }
    }

    /// The series of these label values (one value per label name), made with `make`
    /// when new; `other` for every label once [`MAX_SERIES`] are kept.
    fn slot(&mut self, values: &[&str], make: impl FnOnce() -> T) -> &mut T {
        let i = match self.find(values) {
            Some(i) => i,
            None if self.series.len() < MAX_SERIES => self.insert(values, make()),
            None => {
                let other = vec!["other"; self.labels.len()];
                match self.find(&other) {
                    Some(i) => i,
                    None => self.insert(&other, make()),
                }
            }
        };
        &mut self.series[i].1
    }

    fn find(&self, values: &[&str]) -> Option<usize> {
        self.series
            .iter()
            .position(|(v, _)| v.iter().map(String::as_str).eq(values.iter().copied()))
    }

    fn insert(&mut self, values: &[&str], data: T) -> usize {
        let owned = values.iter().map(|v| (*v).to_string()).collect();
        self.series.push((owned, data));
        self.series.len() - 1
    }

    fn pairs<'a>(&'a self, values: &'a [String]) -> Vec<(&'a str, &'a str)> {
        self.labels
            .iter()
            .copied()
            .zip(values.iter().map(String::as_str))
            .collect()
    }
}

/// A counter family by label values.
#[derive(Debug, Clone)]
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    series: Series<f64>,
}

impl CounterVec {
    /// A counter family named `name` (ending in `_total`) with these label names.
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        CounterVec {
            name,
            help,
            series: Series::new(labels),
        }
    }

    /// One more for these label values (one per label name, in order).
    pub fn inc(&mut self, values: &[&str]) {
        self.add(values, 1.0);
    }

    /// `n` more for these label values.
    pub fn add(&mut self, values: &[&str], n: f64) {
        if n.is_finite() && n > 0.0 {
            *self.series.slot(values, || 0.0) += n;
        }
    }

    /// The count of these label values.
    pub fn get(&self, values: &[&str]) -> f64 {
        self.series
            .find(values)
            .map_or(0.0, |i| self.series.series[i].1)
    }

    /// The family with every series.
    pub fn family(&self) -> MetricFamily {
        let mut f = MetricFamily::counter(self.name, self.help);
        for (values, n) in &self.series.series {
            f.push(&self.series.pairs(values), *n);
        }
        f
    }
}

/// A histogram family by label values.
#[derive(Debug, Clone)]
pub struct HistogramVec {
    name: &'static str,
    help: &'static str,
    bounds: &'static [f64],
    series: Series<Histogram>,
}

impl HistogramVec {
    /// A histogram family named `name` over `bounds`, with these label names.
    pub fn new(
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        bounds: &'static [f64],
    ) -> Self {
        HistogramVec {
            name,
            help,
            bounds,
            series: Series::new(labels),
        }
    }

    /// Counts an observation for these label values.
    pub fn observe(&mut self, values: &[&str], value: f64) {
        let bounds = self.bounds;
        self.series
            .slot(values, || Histogram::new(bounds))
            .observe(value);
    }

    /// The family with every series.
    pub fn family(&self) -> MetricFamily {
        let mut f = MetricFamily::histogram(self.name, self.help);
        for (values, h) in &self.series.series {
            f.push_histogram(&self.series.pairs(values), h.value());
        }
        f
    }
}

/// Answers the hub's `metrics` request with `families()` (computed only when the request
/// really comes from the hub: anything else is refused with GZ4003, whatever the hub's
/// policy let through).
pub fn answer(
    client: &HubClient,
    request: &Envelope,
    families: impl FnOnce() -> Vec<MetricFamily>,
) {
    let answer = if from_hub(request) {
        gleitzeit_protocol::to_payload(&MetricsSnapshot {
            families: families(),
        })
    } else {
        Err(GzError::new(
            ErrorCode::PermissionDenied,
            "only the hub asks for metrics",
        ))
    };
    if let Err(e) = client.respond(request, answer) {
        tracing::debug!(error = %e, "could not answer metrics");
    }
}

/// Whether an envelope is stamped as sent by the hub itself.
fn from_hub(env: &Envelope) -> bool {
    env.auth.as_ref().is_some_and(|a| a.role == Role::Hub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::metrics::{MetricKind, SampleValue};
    use gleitzeit_protocol::{Identity, Target};
    use serde_json::json;

    #[test]
    fn a_histogram_counts_into_cumulative_buckets() {
        let mut h = Histogram::new(&[0.1, 1.0, 10.0]);
        for v in [0.05, 0.1, 0.5, 20.0, f64::NAN, -1.0] {
            h.observe(v);
        }
        let v = h.value();
        assert_eq!(v.buckets, vec![(0.1, 2), (1.0, 3), (10.0, 3)]);
        assert_eq!(
            v.count, 4,
            "NaN and negatives are ignored; 20 is only in +Inf"
        );
        assert!((v.sum - 20.65).abs() < 1e-9);
        assert!(v.is_consistent());
    }

    #[test]
    fn counters_keep_one_series_per_label_set() {
        let mut c = CounterVec::new("t_total", "T.", &["method", "status"]);
        c.inc(&["a", "completed"]);
        c.inc(&["a", "completed"]);
        c.add(&["b", "failed"], 3.0);
        c.add(&["b", "failed"], -1.0);
        assert_eq!(c.get(&["a", "completed"]), 2.0);
        assert_eq!(c.get(&["b", "failed"]), 3.0);
        assert_eq!(c.get(&["c", "failed"]), 0.0);
        let f = c.family();
        assert_eq!((f.name.as_str(), f.kind), ("t_total", MetricKind::Counter));
        assert_eq!(f.samples.len(), 2);
        assert_eq!(f.samples[0].labels["method"], "a");
        assert_eq!(f.samples[0].labels["status"], "completed");
        assert_eq!(f.samples[0].value, SampleValue::Value(2.0));
    }

    #[test]
    fn label_sets_beyond_the_bound_are_counted_as_other() {
        let mut c = CounterVec::new("t_total", "T.", &["method"]);
        for i in 0..MAX_SERIES + 10 {
            c.inc(&[&format!("m{i}")]);
        }
        let f = c.family();
        assert_eq!(f.samples.len(), MAX_SERIES + 1);
        assert_eq!(c.get(&["other"]), 10.0);
        let mut h = HistogramVec::new("d_seconds", "D.", &["method"], SECONDS);
        h.observe(&["x"], 0.2);
        h.observe(&["x"], 3.0);
        let f = h.family();
        assert_eq!(f.kind, MetricKind::Histogram);
        match &f.samples[0].value {
            SampleValue::Histogram(v) => assert_eq!((v.count, v.sum), (2, 3.2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_a_request_stamped_by_the_hub_counts_as_the_hubs() {
        let mut env = Envelope::new(Target::Component("c".into()), "metrics", json!({}));
        assert!(!from_hub(&env));
        env.auth = Some(Identity {
            user: "admin".into(),
            role: Role::Admin,
            key_id: None,
        });
        assert!(!from_hub(&env));
        env.auth = Some(Identity::hub("hub-1"));
        assert!(from_hub(&env));
    }
}
