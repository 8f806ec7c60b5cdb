//! `GET /metrics`: the Prometheus text exposition of the hub and every component on it.
//!
//! On each scrape the hub asks each component registered on *this* hub for its
//! [`MetricsSnapshot`] (`metrics`, hub → `component:<id>`, all at once, each answer awaited
//! at most [`SCRAPE_TIMEOUT`]); components never talk to the scraper themselves. A component
//! that does not answer in time (or answers an error) is left out and counted in
//! `gleitzeit_scrape_errors_total`; one that answers GZ7021 has no metrics and is left out
//! quietly. Every sample of a component gets the labels `component` and `component_type`
//! (overriding any the component set itself). The hub adds its own figures: connections,
//! components by type and health, messages per event, rejections, the mesh, the scrape.
//!
//! Nothing a component sends reaches the text unchecked: names and labels must follow
//! Prometheus' rules, a histogram must be consistent, a family must keep its kind across
//! components, names starting `gleitzeit_hub_` and `gleitzeit_scrape_` belong to the hub,
//! and a component contributes at most [`MAX_SAMPLES_PER_COMPONENT`] samples; whatever fails
//! is dropped. The text itself is written by `prometheus-client` (a [`Collector`] over the
//! gathered families, encoded in the Prometheus text format 0.0.4), not by hand.
//!
//! With several hubs (a mesh), each reports only its own components: Prometheus scrapes
//! every hub (`docs/metrics.md`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::metrics::{
    is_label_name, is_metric_name, MetricFamily, MetricKind, MetricsSnapshot, SampleValue,
};
use gleitzeit_protocol::payloads::ComponentHealth;
use gleitzeit_protocol::Target;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::HubState;

/// How long a scrape waits for each component's answer.
pub(crate) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most samples one component contributes to a scrape.
pub(crate) const MAX_SAMPLES_PER_COMPONENT: usize = 20_000;
/// Name prefixes of the hub's own families; components may not use them.
const HUB_PREFIXES: &[&str] = &["gleitzeit_hub_", "gleitzeit_scrape_"];
/// The label value of events outside the protocol's catalogue.
const OTHER_EVENT: &str = "other";

/// The hub's own counters (kept in [`HubState`], bumped on the hot path with atomics).
pub(crate) struct HubCounters {
    /// Catalogue event names and their index in `messages`.
    index: HashMap<&'static str, usize>,
    names: Vec<&'static str>,
    /// Envelopes accepted per event; the last one counts events outside the catalogue.
    messages: Vec<AtomicU64>,
    /// Envelopes and connections refused, by error code (rare: a lock is fine).
    rejected: Mutex<BTreeMap<String, u64>>,
    /// Failed scrapes by component id: (its type, how many).
    scrape_errors: Mutex<BTreeMap<String, (String, u64)>>,
}

impl HubCounters {
    pub(crate) fn new() -> Self {
        let names: Vec<&'static str> = gleitzeit_protocol::catalog::events()
            .iter()
            .map(|e| e.name)
            .collect();
        let index = names.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let messages = (0..=names.len()).map(|_| AtomicU64::new(0)).collect();
        HubCounters {
            index,
            names,
            messages,
            rejected: Mutex::new(BTreeMap::new()),
            scrape_errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// An envelope with this event was accepted (for the hub or to be routed).
    pub(crate) fn message(&self, event: &str) {
        let i = self.index.get(event).copied().unwrap_or(self.names.len());
        self.messages[i].fetch_add(1, Ordering::Relaxed);
    }

    /// An envelope or a connection was refused with this code.
    pub(crate) fn rejected(&self, code: &str) {
        *lock(&self.rejected).entry(code.to_string()).or_default() += 1;
    }

    fn scrape_failed(&self, id: &str, ty: &str) {
        lock(&self.scrape_errors)
            .entry(id.to_string())
            .or_insert_with(|| (ty.to_string(), 0))
            .1 += 1;
    }

    /// The counters as families; scrape errors only of components still registered here
    /// (`present`), so ids of components long gone do not pile up.
    fn families(&self, present: &HashSet<String>) -> Vec<MetricFamily> {
        let mut messages = MetricFamily::counter(
            "gleitzeit_hub_messages_total",
            "Envelopes the hub accepted from sockets (for itself or to route), by event; events outside the protocol count as other.",
        );
        let events = self.names.iter().copied().chain([OTHER_EVENT]);
        for (name, n) in events.zip(&self.messages) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                messages.push(&[("event", name)], n as f64);
            }
        }
        let mut rejected = MetricFamily::counter(
            "gleitzeit_hub_messages_rejected_total",
            "Envelopes and connections the hub refused (a gz_error or connect_error sent), by error code.",
        );
        for (code, n) in lock(&self.rejected).iter() {
            rejected.push(&[("code", code)], *n as f64);
        }
        let mut errors = MetricFamily::counter(
            "gleitzeit_scrape_errors_total",
            "Scrapes in which a component of this hub did not answer metrics in time (or answered an error).",
        );
        let mut scrape_errors = lock(&self.scrape_errors);
        scrape_errors.retain(|id, _| present.contains(id));
        for (id, (ty, n)) in scrape_errors.iter() {
            errors.push(&[("component", id), ("component_type", ty)], *n as f64);
        }
        vec![messages, rejected, errors]
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `GET /metrics`, behind the same key check as the other pages (any role).
pub(crate) fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::http::require_key,
        ))
        .with_state(state)
}

async fn scrape(State(state): State<Arc<HubState>>) -> Response {
    let started = Instant::now();
    let components: Vec<(String, String)> = state
        .registry()
        .local_list()
        .into_iter()
        .map(|c| (c.registration.component_id, c.registration.component_type))
        .collect();
    let gathered = gather(&state, components.clone()).await;
    let mut exposition = Exposition::default();
    let present: HashSet<String> = components.iter().map(|(id, _)| id.clone()).collect();
    let mut unlimited = usize::MAX;
    for family in hub_families(&state, &gathered, &present, started.elapsed()) {
        exposition.add(family, &[], &mut unlimited);
    }
    for answer in &gathered {
        if let Answer::Snapshot { id, ty, snapshot } = answer {
            let dropped = exposition.add_component(id, ty, snapshot);
            if dropped > 0 {
                warn!(component = %id, dropped, "metrics samples refused (see docs/metrics.md for the rules)");
            }
        }
    }
    match exposition.render() {
        Ok(text) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(e) => {
            warn!(error = %e, "could not encode the metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// What one component answered.
enum Answer {
    Snapshot {
        id: String,
        ty: String,
        snapshot: MetricsSnapshot,
    },
    /// It has no metrics (GZ7021).
    Nothing,
    /// No answer in time, or an error.
    Failed,
}

/// Asks every component at once; answers in the order of the component ids.
async fn gather(state: &Arc<HubState>, components: Vec<(String, String)>) -> Vec<Answer> {
    let mut asks = JoinSet::new();
    for (id, ty) in components {
        let state = state.clone();
        asks.spawn(async move {
            let answer = crate::sockets::ask(
                &state,
                Target::Component(id.clone()),
                events::METRICS,
                serde_json::json!({}),
                SCRAPE_TIMEOUT,
            )
            .await
            .and_then(|ok| {
                serde_json::from_value::<MetricsSnapshot>(ok).map_err(|e| {
                    GzError::new(
                        ErrorCode::InvalidPayload,
                        format!("not a metrics snapshot: {e}"),
                    )
                })
            });
            let answer = match answer {
                Ok(snapshot) => Answer::Snapshot {
                    id: id.clone(),
                    ty,
                    snapshot,
                },
                Err(e) if e.is(ErrorCode::UnknownEvent) => {
                    debug!(component = %id, "a component without metrics");
                    Answer::Nothing
                }
                Err(e) => {
                    warn!(component = %id, code = %e.code, error = %e.message, "no metrics from a component");
                    state.metrics.scrape_failed(&id, &ty);
                    Answer::Failed
                }
            };
            (id, answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = asks.join_next().await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    answers.sort_by(|a, b| a.0.cmp(&b.0));
    answers.into_iter().map(|(_, a)| a).collect()
}

/// The hub's own families.
fn hub_families(
    state: &HubState,
    answers: &[Answer],
    present: &HashSet<String>,
    took: Duration,
) -> Vec<MetricFamily> {
    let status = crate::http::status(state);
    let mut by_type: BTreeMap<(String, &str), u64> = BTreeMap::new();
    for c in state.registry().local_list() {
        let health = match c.health {
            ComponentHealth::Healthy => "healthy",
            ComponentHealth::Unhealthy => "unhealthy",
        };
        *by_type
            .entry((c.registration.component_type, health))
            .or_default() += 1;
    }
    let mut components = MetricFamily::gauge(
        "gleitzeit_hub_components",
        "Components registered on this hub, by type and health.",
    );
    for ((ty, health), n) in &by_type {
        components.push(&[("component_type", ty), ("health", health)], *n as f64);
    }
    let (mut answered, mut without, mut failed) = (0, 0, 0);
    for a in answers {
        match a {
            Answer::Snapshot { .. } => answered += 1,
            Answer::Nothing => without += 1,
            Answer::Failed => failed += 1,
        }
    }
    let mut families = vec![
        MetricFamily::gauge("gleitzeit_hub_up", "1 while the hub serves.").with(&[], 1.0),
        MetricFamily::gauge(
            "gleitzeit_hub_uptime_seconds",
            "Seconds since the hub started.",
        )
        .with(&[], status.uptime_seconds),
        MetricFamily::gauge(
            "gleitzeit_hub_connections",
            "Sockets connected to this hub (components and plain clients).",
        )
        .with(&[], status.connections as f64),
        components,
        MetricFamily::gauge(
            "gleitzeit_scrape_duration_seconds",
            "How long this scrape took to gather every component's metrics.",
        )
        .with(&[], took.as_secs_f64()),
        MetricFamily::gauge(
            "gleitzeit_scrape_components",
            "Components of this hub asked in this scrape, by result: answered, without_metrics (GZ7021) or failed.",
        )
        .with(&[("result", "answered")], f64::from(answered))
        .with(&[("result", "without_metrics")], f64::from(without))
        .with(&[("result", "failed")], f64::from(failed)),
    ];
    if let Some(mesh) = status.mesh {
        families.push(
            MetricFamily::gauge(
                "gleitzeit_hub_mesh_peers",
                "Other hubs of the mesh heard from recently.",
            )
            .with(&[], mesh.peers.len() as f64),
        );
        families.push(
            MetricFamily::counter(
                "gleitzeit_hub_mesh_relayed_total",
                "Envelopes relayed between hubs of the mesh: out, in, and dropped (Redis unreachable).",
            )
            .with(&[("direction", "out")], mesh.relayed_out as f64)
            .with(&[("direction", "in")], mesh.relayed_in as f64)
            .with(&[("direction", "dropped")], mesh.dropped as f64),
        );
    }
    families.extend(state.metrics.families(present));
    families
}

/// Labels of one sample, in order.
type Labels = Vec<(String, String)>;

/// One family ready to encode.
#[derive(Debug)]
struct Family {
    help: String,
    kind: MetricKind,
    samples: Vec<(Labels, SampleValue)>,
    seen: HashSet<Labels>,
}

/// Every family of a scrape, by the name it is exposed under.
#[derive(Debug, Default)]
struct Exposition {
    families: BTreeMap<String, Family>,
}

impl Exposition {
    /// Adds a component's snapshot with its `component` and `component_type` labels;
    /// returns how many samples were refused.
    fn add_component(&mut self, id: &str, ty: &str, snapshot: &MetricsSnapshot) -> usize {
        let mut budget = MAX_SAMPLES_PER_COMPONENT;
        let mut dropped = 0;
        for family in &snapshot.families {
            if HUB_PREFIXES.iter().any(|p| family.name.starts_with(p)) {
                dropped += family.samples.len();
                continue;
            }
            dropped += self.add(
                family.clone(),
                &[("component", id), ("component_type", ty)],
                &mut budget,
            );
        }
        dropped
    }

    /// Adds a family's valid samples, with `extra` labels first (they replace labels of the
    /// same name), spending `budget`; returns how many samples were refused.
    fn add(&mut self, family: MetricFamily, extra: &[(&str, &str)], budget: &mut usize) -> usize {
        let total = family.samples.len();
        let Some(name) = exposed_name(&family) else {
            return total;
        };
        let entry = self.families.entry(name).or_insert_with(|| Family {
            help: family.help.clone(),
            kind: family.kind,
            samples: Vec::new(),
            seen: HashSet::new(),
        });
        if entry.kind != family.kind {
            return total;
        }
        let mut kept = 0;
        for sample in family.samples {
            if *budget == 0 {
                break;
            }
            let Some(labels) = sample_labels(&sample.labels, extra, family.kind) else {
                continue;
            };
            if !value_fits(family.kind, &sample.value) || entry.seen.contains(&labels) {
                continue;
            }
            entry.seen.insert(labels.clone());
            entry.samples.push((labels, sample.value));
            *budget -= 1;
            kept += 1;
        }
        total - kept
    }

    /// The Prometheus text exposition (format 0.0.4) of every family with samples.
    fn render(self) -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Gathered(self.families)));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &registry)?;
        Ok(text)
    }
}

/// The name a family is exposed under (counters end in `_total`), or `None` if invalid.
fn exposed_name(family: &MetricFamily) -> Option<String> {
    if !is_metric_name(&family.name) {
        return None;
    }
    Some(match family.kind {
        MetricKind::Counter if !family.name.ends_with("_total") => {
            format!("{}_total", family.name)
        }
        _ => family.name.clone(),
    })
}

/// `extra` then the sample's own labels (sorted), or `None` if a name is invalid (or `le`
/// on a histogram, which the buckets use).
fn sample_labels(
    own: &BTreeMap<String, String>,
    extra: &[(&str, &str)],
    kind: MetricKind,
) -> Option<Labels> {
    let mut labels: Labels = extra
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    for (k, v) in own {
        if !is_label_name(k) || (kind == MetricKind::Histogram && k == "le") {
            return None;
        }
        if !extra.iter().any(|(e, _)| e == k) {
            labels.push((k.clone(), v.clone()));
        }
    }
    Some(labels)
}

/// Whether a sample's figure suits its family's kind (counters never negative, histograms
/// consistent).
fn value_fits(kind: MetricKind, value: &SampleValue) -> bool {
    match (kind, value) {
        (MetricKind::Counter, SampleValue::Value(v)) => v.is_finite() && *v >= 0.0,
        (MetricKind::Gauge, SampleValue::Value(v)) => v.is_finite(),
        (MetricKind::Histogram, SampleValue::Histogram(h)) => h.is_consistent(),
        _ => false,
    }
}

/// The gathered families as a `prometheus-client` collector (encoded once per scrape).
#[derive(Debug)]
struct Gathered(BTreeMap<String, Family>);

impl Collector for Gathered {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, family) in &self.0 {
            if family.samples.is_empty() {
                continue;
            }
            let (base, metric_type) = match family.kind {
                // The encoder writes counters as `<name>_total` itself.
                MetricKind::Counter => (
                    name.strip_suffix("_total").unwrap_or(name),
                    MetricType::Counter,
                ),
                MetricKind::Gauge => (name.as_str(), MetricType::Gauge),
                MetricKind::Histogram => (name.as_str(), MetricType::Histogram),
            };
            let mut metric = encoder.encode_descriptor(base, &family.help, None, metric_type)?;
            for (labels, value) in &family.samples {
                let mut sample = metric.encode_family(labels)?;
                match value {
                    SampleValue::Value(v) if family.kind == MetricKind::Counter => {
                        sample.encode_counter::<NoLabelSet, f64, f64>(v, None)?;
                    }
                    SampleValue::Value(v) => sample.encode_gauge(v)?,
                    SampleValue::Histogram(h) => {
                        // The wire's buckets are cumulative; the encoder adds them up itself.
                        let mut below = 0;
                        let buckets: Vec<(f64, u64)> = h
                            .buckets
                            .iter()
                            .map(|(le, n)| {
                                let in_bucket = n.saturating_sub(below);
                                below = *n;
                                (*le, in_bucket)
                            })
                            .collect();
                        sample.encode_histogram::<NoLabelSet>(h.sum, h.count, &buckets, None)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::metrics::HistogramValue;

    fn snapshot() -> MetricsSnapshot {
        let mut wait = MetricFamily::histogram("gleitzeit_task_queue_wait_seconds", "Wait.");
        wait.push_histogram(
            &[("method", "python/execute")],
            HistogramValue {
                buckets: vec![(0.1, 1), (1.0, 3)],
                sum: 1.5,
                count: 4,
            },
        );
        MetricsSnapshot {
            families: vec![
                MetricFamily::counter("gleitzeit_tasks_total", "Tasks.")
                    .with(&[("method", "llm/chat"), ("status", "completed")], 2.0)
                    .with(&[("component", "spoofed")], 1.0),
                MetricFamily::gauge("gleitzeit_queue_depth", "Queued.")
                    .with(&[("method", "m")], 0.0),
                wait,
            ],
        }
    }

    #[test]
    fn component_samples_are_labelled_and_rendered_as_prometheus_text() {
        let mut e = Exposition::default();
        assert_eq!(e.add_component("qm-1", "queue-manager", &snapshot()), 0);
        let text = e.render().expect("text");
        assert!(
            text.contains("# TYPE gleitzeit_tasks_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "gleitzeit_tasks_total{component=\"qm-1\",component_type=\"queue-manager\",method=\"llm/chat\",status=\"completed\"} 2.0\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "gleitzeit_tasks_total{component=\"qm-1\",component_type=\"queue-manager\"} 1.0\n"
            ),
            "the component's own `component` label is replaced: {text}"
        );
        assert!(
            text.contains("# TYPE gleitzeit_queue_depth gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("gleitzeit_task_queue_wait_seconds_bucket{component=\"qm-1\",component_type=\"queue-manager\",method=\"python/execute\",le=\"1\"} 3\n"),
            "cumulative buckets come out cumulative: {text}"
        );
        assert!(text.contains("le=\"+Inf\"} 4\n"), "{text}");
        assert!(
            text.contains("gleitzeit_task_queue_wait_seconds_count{"),
            "{text}"
        );
    }

    #[test]
    fn what_breaks_the_rules_is_dropped() {
        let mut e = Exposition::default();
        let bad = MetricsSnapshot {
            families: vec![
                MetricFamily::gauge("bad-name", "x").with(&[], 1.0),
                MetricFamily::gauge("gleitzeit_hub_connections", "spoof").with(&[], 9.0),
                MetricFamily::gauge("ok", "x")
                    .with(&[("__reserved", "x")], 1.0)
                    .with(&[("a", "1")], 1.0)
                    .with(&[("a", "1")], 2.0),
                MetricFamily::counter("negative_total", "x").with(&[], -1.0),
                MetricFamily {
                    name: "mixed".into(),
                    help: String::new(),
                    kind: MetricKind::Histogram,
                    samples: vec![gleitzeit_protocol::metrics::Sample {
                        labels: BTreeMap::new(),
                        value: SampleValue::Value(1.0),
                    }],
                },
            ],
        };
        assert_eq!(e.add_component("c", "t", &bad), 6);
        // A later component cannot change a family's kind.
        let mut clash = MetricFamily::histogram("ok", "x");
        clash.push_histogram(&[], HistogramValue::default());
        let clash = MetricsSnapshot {
            families: vec![clash],
        };
        assert_eq!(e.add_component("d", "t", &clash), 1);
        let text = e.render().expect("text");
        assert!(!text.contains("bad-name") && !text.contains("gleitzeit_hub_connections"));
        assert!(
            text.contains("ok{component=\"c\",component_type=\"t\",a=\"1\"} 1.0\n"),
            "{text}"
        );
        assert!(
            !text.contains("negative") && !text.contains("mixed"),
            "{text}"
        );
    }

    #[test]
    fn a_component_is_held_to_its_sample_budget() {
        let mut e = Exposition::default();
        let mut big = MetricFamily::gauge("many", "x");
        for i in 0..MAX_SAMPLES_PER_COMPONENT + 5 {
            big.push(&[("i", &i.to_string())], 1.0);
        }
        let dropped = e.add_component(
            "c",
            "t",
            &MetricsSnapshot {
                families: vec![big],
            },
        );
        assert_eq!(dropped, 5);
    }

    #[test]
    fn messages_count_per_catalogue_event_and_others_as_one() {
        let c = HubCounters::new();
        c.message(events::EXECUTE_TASKS);
        c.message(events::EXECUTE_TASKS);
        c.message("my_own_event");
        c.message("another_one");
        c.rejected("GZ4003");
        c.scrape_failed("gone", "t");
        c.scrape_failed("here", "t");
        let present: HashSet<String> = ["here".to_string()].into_iter().collect();
        let families = c.families(&present);
        let messages = &families[0];
        let find = |event: &str| {
            messages
                .samples
                .iter()
                .find(|s| s.labels["event"] == event)
                .map(|s| s.value.clone())
        };
        assert_eq!(find("execute_tasks"), Some(SampleValue::Value(2.0)));
        assert_eq!(find("other"), Some(SampleValue::Value(2.0)));
        assert_eq!(find("my_own_event"), None);
        assert_eq!(families[1].samples.len(), 1);
        assert_eq!(
            families[2].samples.len(),
            1,
            "errors of gone components are forgotten"
        );
        assert_eq!(families[2].samples[0].labels["component"], "here");
    }
}
