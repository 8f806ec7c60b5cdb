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

use gleitzeit_protocol::identity::{redact_text, redact_url};
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
    fn tried_endpoints_are_skipped() {
        let p = pool(Strategy::RoundRobin, &[1, 1]);
        let tried: HashSet<usize> = [0].into_iter().collect();
        assert_eq!(
            p.try_acquire("m", &[], &tried).map(|s| s.index).ok(),
            Some(1)
        );
    }
}
