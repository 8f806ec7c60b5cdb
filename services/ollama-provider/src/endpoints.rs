//! The endpoints' live state and the choice of an endpoint for a request.
//!
//! One lock guards every endpoint's counters, so choosing an endpoint and taking one of its
//! slots is atomic: `max_concurrent` is never exceeded. A request that finds every candidate
//! full waits for a slot to free up. An endpoint that fails `failure_threshold` times in a
//! row goes into cooldown; when that ends, one request (or the health check) probes it
//! (half-open), and success brings it back.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gleitzeit_component::metrics::{Histogram, SECONDS};
use gleitzeit_protocol::identity::{redact_text, redact_url};
use gleitzeit_protocol::metrics::MetricFamily;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::config::{EndpointConfig, ProviderConfig, Strategy};

/// Health of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Health {
    /// Serving.
    Healthy,
    /// The last health check failed; used again only after a successful check.
    Unhealthy,
    /// Failing repeatedly: left alone until the instant, then probed once.
    Cooldown(Instant),
}

#[derive(Debug)]
struct State {
    in_flight: u32,
    discovered: Option<HashSet<String>>,
    loaded: HashSet<String>,
    health: Health,
    failures_in_row: u32,
    probing: bool,
    ewma_ms: Option<f64>,
    requests: u64,
    errors: u64,
    last_error: Option<String>,
    /// How long requests took that did not fail the endpoint.
    latency: Histogram,
}

/// Why no endpoint was chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum NoEndpoint {
    /// Candidates exist, but all their slots are taken.
    Busy,
    /// No endpoint lists the model.
    UnknownModel,
    /// No endpoint has the required tags.
    NoTags,
    /// Candidates exist but none is healthy (or all were tried already).
    Unavailable,
}

/// All endpoints.
pub struct Pool {
    /// Settings.
    pub config: ProviderConfig,
    state: Mutex<Vec<State>>,
    freed: Notify,
    cursor: Mutex<usize>,
}

/// A taken slot on endpoint `index`; give it back with [`Pool::release`].
#[derive(Debug)]
pub struct Slot {
    /// Endpoint index.
    pub index: usize,
    started: Instant,
    probe: bool,
}

impl Pool {
    /// A pool over the configured endpoints, all assumed healthy until checked.
    pub fn new(config: ProviderConfig) -> Pool {
        let state = config
            .endpoints
            .iter()
            .map(|_| State {
                in_flight: 0,
                discovered: None,
                loaded: HashSet::new(),
                health: Health::Healthy,
                failures_in_row: 0,
                probing: false,
                ewma_ms: None,
                requests: 0,
                errors: 0,
                last_error: None,
                latency: Histogram::new(SECONDS),
            })
            .collect();
        Pool {
            config,
            state: Mutex::new(state),
            freed: Notify::new(),
            cursor: Mutex::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<State>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Endpoint settings by index.
    pub fn endpoint(&self, i: usize) -> &EndpointConfig {
        &self.config.endpoints[i]
    }

    fn serves(cfg: &EndpointConfig, st: &State, model: &str) -> bool {
        if !cfg.models.is_empty() {
            return cfg.models.iter().any(|m| same_model(m, model));
        }
        match &st.discovered {
            Some(set) => set.iter().any(|m| same_model(m, model)),
            None => true,
        }
    }

    /// Tries to take a slot on the best endpoint for `model` with `tags`, skipping `tried`.
    pub fn try_acquire(
        &self,
        model: &str,
        tags: &[String],
        tried: &HashSet<usize>,
    ) -> Result<Slot, NoEndpoint> {
        let now = Instant::now();
        let mut st = self.lock();
        let tagged: Vec<usize> = (0..st.len())
            .filter(|&i| {
                tags.iter()
                    .all(|t| self.config.endpoints[i].tags.contains(t))
            })
            .collect();
        if tagged.is_empty() {
            return Err(NoEndpoint::NoTags);
        }
        let serving: Vec<usize> = tagged
            .into_iter()
            .filter(|&i| Self::serves(&self.config.endpoints[i], &st[i], model))
            .collect();
        if serving.is_empty() {
            return Err(NoEndpoint::UnknownModel);
        }
        let usable: Vec<usize> = serving
            .into_iter()
            .filter(|i| !tried.contains(i))
            .filter(|&i| match st[i].health {
                Health::Healthy => true,
                Health::Unhealthy => false,
                Health::Cooldown(until) => until <= now && !st[i].probing,
            })
            .collect();
        if usable.is_empty() {
            return Err(NoEndpoint::Unavailable);
        }
        let free: Vec<usize> = usable
            .into_iter()
            .filter(|&i| st[i].in_flight < self.config.endpoints[i].max_concurrent)
            .collect();
        if free.is_empty() {
            return Err(NoEndpoint::Busy);
        }
        let index = self.pick(&st, &free, model);
        let s = &mut st[index];
        s.in_flight += 1;
        s.requests += 1;
        let probe = matches!(s.health, Health::Cooldown(_));
        if probe {
            s.probing = true;
        }
        Ok(Slot {
            index,
            started: Instant::now(),
            probe,
        })
    }

    fn pick(&self, st: &[State], free: &[usize], model: &str) -> usize {
        let cfg = &self.config.endpoints;
        let load = |i: usize| f64::from(st[i].in_flight) / f64::from(cfg[i].max_concurrent.max(1));
        // Lower key wins; priority breaks ties (higher first), then chance.
        let best_by = |key: &dyn Fn(usize) -> f64| -> usize {
            let min = free.iter().map(|&i| key(i)).fold(f64::INFINITY, f64::min);
            let tied: Vec<usize> = free
                .iter()
                .copied()
                .filter(|&i| key(i) <= min + 1e-9)
                .collect();
            let top = tied.iter().map(|&i| cfg[i].priority).max().unwrap_or(0);
            let top: Vec<usize> = tied
                .into_iter()
                .filter(|&i| cfg[i].priority == top)
                .collect();
            top[rand::random::<u32>() as usize % top.len()]
        };
        match self.config.strategy {
            Strategy::LeastLoaded => best_by(&load),
            Strategy::FastestResponse => best_by(&|i| st[i].ewma_ms.unwrap_or(0.0)),
            Strategy::ModelAffinity => best_by(&|i| {
                let cold = if st[i].loaded.iter().any(|m| same_model(m, model)) {
                    0.0
                } else {
                    1.0
                };
                cold * 10.0 + load(i)
            }),
            Strategy::RoundRobin => {
                let mut c = self.cursor.lock().unwrap_or_else(|p| p.into_inner());
                *c = c.wrapping_add(1);
                free[*c % free.len()]
            }
        }
    }

    /// A future that completes when a slot is released. Create it *before* trying to
    /// acquire, so a release between the attempt and the wait is not missed.
    pub fn slot_freed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut n = Box::pin(self.freed.notified());
        n.as_mut().enable();
        n
    }

    /// Gives a slot back and records how the request went. `failed` is an endpoint failure
    /// (connection error, 5xx, timeout), not a request error such as an unknown model.
    pub fn release(&self, slot: Slot, failed: Option<String>) {
        let elapsed_ms = slot.started.elapsed().as_secs_f64() * 1000.0;
        {
            let mut st = self.lock();
            let threshold = self.config.failure_threshold;
            let cooldown = Duration::from_secs_f64(self.config.cooldown);
            let s = &mut st[slot.index];
            s.in_flight = s.in_flight.saturating_sub(1);
            if slot.probe {
                s.probing = false;
            }
            match failed {
                None => {
                    s.latency.observe(elapsed_ms / 1000.0);
                    s.failures_in_row = 0;
                    s.health = Health::Healthy;
                    s.ewma_ms = Some(match s.ewma_ms {
                        Some(prev) => prev * 0.8 + elapsed_ms * 0.2,
                        None => elapsed_ms,
                    });
                }
                Some(err) => {
                    s.errors += 1;
                    s.failures_in_row += 1;
                    s.last_error = Some(err);
                    if slot.probe || s.failures_in_row >= threshold {
                        s.health = Health::Cooldown(Instant::now() + cooldown);
                    }
                }
            }
        }
        self.freed.notify_waiters();
    }

    /// Records a health check.
    pub fn health_checked(&self, i: usize, result: Result<(Vec<String>, Vec<String>), String>) {
        {
            let mut st = self.lock();
            let s = &mut st[i];
            match result {
                Ok((models, loaded)) => {
                    s.discovered = Some(models.into_iter().collect());
                    s.loaded = loaded.into_iter().collect();
                    let cooling =
                        matches!(s.health, Health::Cooldown(until) if until > Instant::now());
                    if !cooling {
                        s.health = Health::Healthy;
                        s.failures_in_row = 0;
                    }
                }
                Err(e) => {
                    s.last_error = Some(e);
                    if !matches!(s.health, Health::Cooldown(_)) {
                        s.health = Health::Unhealthy;
                    }
                }
            }
        }
        self.freed.notify_waiters();
    }

    /// Adds a model to an endpoint's list (after a pull).
    pub fn model_added(&self, i: usize, model: &str) {
        let mut st = self.lock();
        st[i]
            .discovered
            .get_or_insert_with(HashSet::new)
            .insert(model.to_string());
    }

    /// Requests in flight on all endpoints.
    pub fn load(&self) -> u32 {
        self.lock().iter().map(|s| s.in_flight).sum()
    }

    /// The endpoints as shown by `gz providers` and dashboards.
    pub fn snapshot(&self) -> Value {
        let now = Instant::now();
        let st = self.lock();
        let list: Vec<Value> = self
            .config
            .endpoints
            .iter()
            .zip(st.iter())
            .map(|(c, s)| {
                let (health, cooldown) = match s.health {
                    Health::Healthy => ("healthy", 0.0),
                    Health::Unhealthy => ("unhealthy", 0.0),
                    Health::Cooldown(until) => ("cooldown", until.saturating_duration_since(now).as_secs_f64()),
                };
                let mut models: Vec<String> = if c.models.is_empty() {
                    s.discovered.iter().flatten().cloned().collect()
                } else {
                    c.models.clone()
                };
                models.sort();
                let mut loaded: Vec<&String> = s.loaded.iter().collect();
                loaded.sort();
                json!({
                    "name": c.name, "url": redact_url(&c.url), "kind": c.kind, "priority": c.priority, "tags": c.tags,
                    "health": health, "cooldown_remaining_seconds": cooldown,
                    "in_flight": s.in_flight, "max_concurrent": c.max_concurrent,
                    "models": models, "loaded_models": loaded,
                    "latency_ms": s.ewma_ms, "requests": s.requests, "errors": s.errors, "last_error": s.last_error.as_deref().map(redact_text),
                })
            })
            .collect();
        json!({ "strategy": self.config.strategy, "endpoints": list })
    }

    /// The endpoints' metrics, labelled `endpoint` (its configured name): health (1 for its
    /// state, 0 for the others), requests in flight and slots, requests, endpoint failures and
    /// the latency of requests that did not fail the endpoint.
    pub fn metrics(&self) -> Vec<MetricFamily> {
        let mut health = MetricFamily::gauge(
            "gleitzeit_llm_endpoint_health",
            "Health of an LLM endpoint: 1 for its current state (healthy, unhealthy or cooldown), 0 for the others.",
        );
        let mut in_flight = MetricFamily::gauge(
            "gleitzeit_llm_endpoint_in_flight",
            "Requests an LLM endpoint serves right now.",
        );
        let mut slots = MetricFamily::gauge(
            "gleitzeit_llm_endpoint_slots",
            "Requests an LLM endpoint may serve at once (max_concurrent).",
        );
        let mut requests = MetricFamily::counter(
            "gleitzeit_llm_endpoint_requests_total",
            "Requests sent to an LLM endpoint.",
        );
        let mut errors = MetricFamily::counter(
            "gleitzeit_llm_endpoint_errors_total",
            "Requests an LLM endpoint failed (connection error, 5xx, timeout): the failures that count towards its cooldown.",
        );
        let mut latency = MetricFamily::histogram(
            "gleitzeit_llm_endpoint_latency_seconds",
            "How long requests to an LLM endpoint took that did not fail the endpoint (its answers, including request errors such as an unknown model).",
        );
        let st = self.lock();
        for (c, s) in self.config.endpoints.iter().zip(st.iter()) {
            let endpoint = [("endpoint", c.name.as_str())];
            let now = match s.health {
                Health::Healthy => "healthy",
                Health::Unhealthy => "unhealthy",
                Health::Cooldown(_) => "cooldown",
            };
            for state in ["healthy", "unhealthy", "cooldown"] {
                let up = if state == now { 1.0 } else { 0.0 };
                health.push(&[("endpoint", c.name.as_str()), ("state", state)], up);
            }
            in_flight.push(&endpoint, f64::from(s.in_flight));
            slots.push(&endpoint, f64::from(c.max_concurrent));
            requests.push(&endpoint, s.requests as f64);
            errors.push(&endpoint, s.errors as f64);
            latency.push_histogram(&endpoint, s.latency.value());
        }
        vec![health, in_flight, slots, requests, errors, latency]
    }
}

/// `llama3.2` and `llama3.2:latest` name the same model.
pub fn same_model(a: &str, b: &str) -> bool {
    let norm = |m: &str| {
        if m.contains(':') {
            m.to_string()
        } else {
            format!("{m}:latest")
        }
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(strategy: Strategy, slots: &[u32]) -> Pool {
        let urls: Vec<String> = (0..slots.len()).map(|i| format!("http://e{i}:1")).collect();
        let mut cfg = ProviderConfig::from_urls(&urls.join(","), 1).expect("cfg");
        for (e, s) in cfg.endpoints.iter_mut().zip(slots) {
            e.max_concurrent = *s;
        }
        cfg.strategy = strategy;
        cfg.cooldown = 0.05;
        Pool::new(cfg)
    }

    #[test]
    fn slots_are_never_exceeded_and_least_loaded_spreads() {
        let p = pool(Strategy::LeastLoaded, &[2, 1]);
        let none = HashSet::new();
        let a = p.try_acquire("m", &[], &none).expect("slot");
        let b = p.try_acquire("m", &[], &none).expect("slot");
        let c = p.try_acquire("m", &[], &none).expect("slot");
        assert_eq!(p.try_acquire("m", &[], &none).err(), Some(NoEndpoint::Busy));
        let mut used = [a.index, b.index, c.index];
        used.sort();
        assert_eq!(used, [0, 0, 1]);
        p.release(a, None);
        assert!(p.try_acquire("m", &[], &none).is_ok());
    }

    #[test]
    fn models_and_tags_filter_candidates() {
        let mut cfg = ProviderConfig::from_urls("http://a:1,http://b:1", 1).expect("cfg");
        cfg.endpoints[0].models = vec!["llama3.2:latest".into()];
        cfg.endpoints[1].tags = vec!["gpu".into()];
        let p = Pool::new(cfg);
        let none = HashSet::new();
        assert_eq!(
            p.try_acquire("llama3.2", &["gpu".into()], &none)
                .map(|s| s.index)
                .ok(),
            Some(1)
        );
        p.health_checked(1, Ok((vec!["other:latest".into()], vec![])));
        assert_eq!(
            p.try_acquire("llama3.2", &["gpu".into()], &none).err(),
            Some(NoEndpoint::UnknownModel)
        );
        assert_eq!(
            p.try_acquire("x", &["tpu".into()], &none).err(),
            Some(NoEndpoint::NoTags)
        );
    }

    #[test]
    fn failing_endpoints_cool_down_and_come_back_through_a_probe() {
        let p = pool(Strategy::LeastLoaded, &[4]);
        let none = HashSet::new();
        for _ in 0..3 {
            let s = p.try_acquire("m", &[], &none).expect("slot");
            p.release(s, Some("boom".into()));
        }
        assert_eq!(
            p.try_acquire("m", &[], &none).err(),
            Some(NoEndpoint::Unavailable)
        );
        std::thread::sleep(Duration::from_millis(60));
        let probe = p.try_acquire("m", &[], &none).expect("half-open probe");
        assert_eq!(
            p.try_acquire("m", &[], &none).err(),
            Some(NoEndpoint::Unavailable),
            "one probe at a time"
        );
        p.release(probe, None);
        assert!(p.try_acquire("m", &[], &none).is_ok());
    }

    #[test]
    fn metrics_show_each_endpoints_state_load_and_requests() {
        use gleitzeit_protocol::metrics::SampleValue;
        let p = pool(Strategy::LeastLoaded, &[2, 1]);
        let none = HashSet::new();
        let a = p.try_acquire("m", &[], &none).expect("slot");
        let b = p.try_acquire("m", &[], &none).expect("slot");
        p.release(a, None);
        p.health_checked(1, Err("down".into()));
        let families = p.metrics();
        let value = |name: &str, labels: &[(&str, &str)]| {
            let f = families.iter().find(|f| f.name == name).expect(name);
            let s = f
                .samples
                .iter()
                .find(|s| labels.iter().all(|(k, v)| s.labels[*k] == *v))
                .expect("sample");
            match &s.value {
                SampleValue::Value(v) => *v,
                SampleValue::Histogram(h) => h.count as f64,
            }
        };
        let name = |i: usize| p.endpoint(i).name.clone();
        let (e0, e1) = (name(0), name(1));
        let requests = value(
            "gleitzeit_llm_endpoint_requests_total",
            &[("endpoint", &e0)],
        ) + value(
            "gleitzeit_llm_endpoint_requests_total",
            &[("endpoint", &e1)],
        );
        assert_eq!(requests, 2.0);
        assert_eq!(
            value("gleitzeit_llm_endpoint_slots", &[("endpoint", &e0)]),
            2.0
        );
        let unhealthy = [("endpoint", e1.as_str()), ("state", "unhealthy")];
        assert_eq!(value("gleitzeit_llm_endpoint_health", &unhealthy), 1.0);
        let healthy = [("endpoint", e1.as_str()), ("state", "healthy")];
        assert_eq!(value("gleitzeit_llm_endpoint_health", &healthy), 0.0);
        let in_flight = value("gleitzeit_llm_endpoint_in_flight", &[("endpoint", &e0)])
            + value("gleitzeit_llm_endpoint_in_flight", &[("endpoint", &e1)]);
        assert_eq!(in_flight, 1.0, "one request still runs");
        let latencies = value(
            "gleitzeit_llm_endpoint_latency_seconds",
            &[("endpoint", &e0)],
        ) + value(
            "gleitzeit_llm_endpoint_latency_seconds",
            &[("endpoint", &e1)],
        );
        assert_eq!(latencies, 1.0, "one request finished");
        p.release(b, Some("boom".into()));
        let errors: f64 = p
            .metrics()
            .iter()
            .filter(|f| f.name == "gleitzeit_llm_endpoint_errors_total")
            .flat_map(|f| &f.samples)
            .map(|s| match s.value {
                SampleValue::Value(v) => v,
                SampleValue::Histogram(_) => 0.0,
            })
            .sum();
        assert_eq!(errors, 1.0);
    }

    #[test]
    fn tried_endpoints_are_skipped() {
        let p = pool(Strategy::RoundRobin, &[1, 1]);
        let tried: HashSet<usize> = [0].into_iter().collect();
        assert_eq!(
            p.try_acquire("m", &[], &tried).map(|s| s.index).ok(),
            Some(1)
        );
    }
}
