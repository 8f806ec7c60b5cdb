//! The simulator's shared state: run-time knobs, the served model list, counters, the
//! concurrency gate ([`Sim::admit`]) and the failure draw.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::text;
use crate::{Overflow, SimConfig};

/// How long a used model counts as loaded (`/api/ps`), like Ollama's default keep-alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(300);

/// Counters reported by `GET /_sim/stats` (and [`crate::SimHandle::stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// The server's `--name`.
    pub name: String,
    /// Requests to every endpoint except `/_sim/*`.
    pub requests_total: u64,
    /// Requests per path (`/api/chat`, `/v1/chat/completions`, …; unknown paths count
    /// under `unmatched`).
    pub by_endpoint: BTreeMap<String, u64>,
    /// Generation requests holding a slot right now (chat, generate, embed, OpenAI chat
    /// and embeddings).
    pub in_flight: u64,
    /// Highest `in_flight` since start or the last reset.
    pub max_in_flight_seen: u64,
    /// Generation requests waiting for a slot right now (overflow `queue` only).
    pub queued: u64,
    /// Highest `queued` since start or the last reset. `max_in_flight_seen +
    /// max_queued_seen` bounds the concurrency a client actually attempted.
    pub max_queued_seen: u64,
    /// Requests answered 429 because every slot was taken (overflow `reject`).
    pub rejected_429: u64,
    /// Requests answered 500 by the simulated error rate.
    pub errors_500: u64,
    /// Generation requests per model (the served name, e.g. `llama3.2:latest`), counted
    /// once the model is resolved, whatever the outcome.
    pub by_model: BTreeMap<String, u64>,
    /// Images received with generation requests (Ollama `images`, OpenAI `image_url` parts).
    pub images_received: u64,
}

/// The knobs `POST /_sim/config` may change while running.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    /// Time to first token.
    pub latency: Duration,
    /// Streaming speed; 0 means instant.
    pub tokens_per_second: f64,
    /// Probability of a simulated 500.
    pub error_rate: f64,
}

impl Knobs {
    /// The pause between two tokens (zero when `tokens_per_second` is 0).
    pub fn per_token(&self) -> Duration {
        if self.tokens_per_second > 0.0 {
            Duration::try_from_secs_f64(1.0 / self.tokens_per_second).unwrap_or(Duration::MAX)
        } else {
            Duration::ZERO
        }
    }
}

/// One served model.
#[derive(Debug, Clone)]
pub struct Model {
    /// Full name with tag, e.g. `llama3.2:latest`.
    pub name: String,
    /// When it was added (start-up or pull).
    pub modified_at: SystemTime,
}

#[derive(Debug, Default)]
struct Inner {
    stats: SimStats,
    models: Vec<Model>,
    last_used: HashMap<String, SystemTime>,
    /// How often each request key has been drawn for failure (seeded mode).
    draws: HashMap<u64, u64>,
    /// How often each `key` of `/http/flaky` has been called.
    calls: HashMap<String, u64>,
}

/// The state behind every handler.
#[derive(Debug)]
pub struct Sim {
    /// The server's name (stats, `x-llm-sim` header).
    pub name: String,
    /// Bearer token required on every API request, if set.
    pub api_key: Option<String>,
    /// Slot limit (0 = unlimited).
    pub max_concurrent: usize,
    /// What happens beyond the limit.
    pub overflow: Overflow,
    /// Seed for reproducible failure draws.
    pub seed: Option<u64>,
    knobs: Mutex<Knobs>,
    inner: Mutex<Inner>,
    slots: Option<Arc<Semaphore>>,
    next_id: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sanitises a rate to `[0, 1]` (NaN becomes 0).
pub fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        0.0
    } else {
        rate.clamp(0.0, 1.0)
    }
}

/// Sanitises a speed to a finite value `>= 0` (anything else becomes 0 = instant).
pub fn clamp_speed(tps: f64) -> f64 {
    if tps.is_finite() && tps > 0.0 {
        tps
    } else {
        0.0
    }
}

/// The canonical form of a model name: `name:latest` when no tag is given.
pub fn canonical_model(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// A model's name as hosted APIs (Anthropic, Gemini) spell it: without the `:latest` tag.
pub fn bare_model_name(name: &str) -> &str {
    name.strip_suffix(":latest").unwrap_or(name)
}

impl Sim {
    /// State for `config`.
    pub fn new(config: SimConfig) -> Sim {
        let now = SystemTime::now();
        let mut models: Vec<Model> = Vec::new();
        for name in &config.models {
            let name = canonical_model(name.trim());
            if !name.starts_with(':') && !models.iter().any(|m| m.name == name) {
                models.push(Model {
                    name,
                    modified_at: now,
                });
            }
        }
        let slots =
            (config.max_concurrent > 0).then(|| Arc::new(Semaphore::new(config.max_concurrent)));
        Sim {
            inner: Mutex::new(Inner {
                stats: SimStats {
                    name: config.name.clone(),
                    ..SimStats::default()
                },
                models,
                ..Inner::default()
            }),
            name: config.name,
            api_key: config.api_key.filter(|k| !k.is_empty()),
            max_concurrent: config.max_concurrent,
            overflow: config.overflow,
            seed: config.seed,
            knobs: Mutex::new(Knobs {
                latency: config.latency,
                tokens_per_second: clamp_speed(config.tokens_per_second),
                error_rate: clamp_rate(config.error_rate),
            }),
            slots,
            next_id: AtomicU64::new(1),
        }
    }

    /// The current knobs.
    pub fn knobs(&self) -> Knobs {
        *lock(&self.knobs)
    }

    /// Changes the knobs given.
    pub fn update_knobs(
        &self,
        latency: Option<Duration>,
        tokens_per_second: Option<f64>,
        error_rate: Option<f64>,
    ) -> Knobs {
        let mut k = lock(&self.knobs);
        if let Some(l) = latency {
            k.latency = l;
        }
        if let Some(t) = tokens_per_second {
            k.tokens_per_second = clamp_speed(t);
        }
        if let Some(r) = error_rate {
            k.error_rate = clamp_rate(r);
        }
        *k
    }

    /// A fresh number for response ids.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts one request to `endpoint`.
    pub fn count_request(&self, endpoint: &str) {
        let mut inner = lock(&self.inner);
        inner.stats.requests_total += 1;
        *inner
            .stats
            .by_endpoint
            .entry(endpoint.to_string())
            .or_insert(0) += 1;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        lock(&self.inner).stats.clone()
    }

    /// Zeroes the counters (the maxima restart from what is in flight now) and restarts the
    /// seeded failure sequence and the calls counted by `/http/flaky`.
    pub fn reset(&self) {
        let mut inner = lock(&self.inner);
        let s = &mut inner.stats;
        *s = SimStats {
            name: std::mem::take(&mut s.name),
            in_flight: s.in_flight,
            max_in_flight_seen: s.in_flight,
            queued: s.queued,
            max_queued_seen: s.queued,
            ..SimStats::default()
        };
        inner.draws.clear();
        inner.calls.clear();
    }

    /// Counts one more call with `key` (of `/http/flaky`); returns its number, from 1.
    pub fn nth_call(&self, key: &str) -> u64 {
        let mut inner = lock(&self.inner);
        let n = inner.calls.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }

    /// The served models.
    pub fn models(&self) -> Vec<Model> {
        lock(&self.inner).models.clone()
    }

    /// The served name `requested` refers to (`llama3.2` finds `llama3.2:latest`).
    pub fn resolve_model(&self, requested: &str) -> Option<String> {
        let wanted = canonical_model(requested.trim());
        lock(&self.inner)
            .models
            .iter()
            .find(|m| m.name == wanted)
            .map(|m| m.name.clone())
    }

    /// Adds a model (as by a pull); returns its served name.
    pub fn add_model(&self, requested: &str) -> String {
        let name = canonical_model(requested.trim());
        let mut inner = lock(&self.inner);
        let now = SystemTime::now();
        match inner.models.iter_mut().find(|m| m.name == name) {
            Some(m) => m.modified_at = now,
            None => inner.models.push(Model {
                name: name.clone(),
                modified_at: now,
            }),
        }
        name
    }

    /// Removes a model; false if it was not served.
    pub fn remove_model(&self, requested: &str) -> bool {
        let name = canonical_model(requested.trim());
        let mut inner = lock(&self.inner);
        let before = inner.models.len();
        inner.models.retain(|m| m.name != name);
        inner.last_used.remove(&name);
        inner.models.len() != before
    }

    /// Models used within [`KEEP_ALIVE`], with the time they were last used.
    pub fn loaded_models(&self) -> Vec<(Model, SystemTime)> {
        let inner = lock(&self.inner);
        let now = SystemTime::now();
        inner
            .models
            .iter()
            .filter_map(|m| {
                let used = *inner.last_used.get(&m.name)?;
                let age = now.duration_since(used).unwrap_or_default();
                (age < KEEP_ALIVE).then(|| (m.clone(), used))
            })
            .collect()
    }

    /// Marks `model` as loaded without generating (Ollama's empty-prompt "load" requests).
    pub fn touch_model(&self, model: &str) {
        lock(&self.inner)
            .last_used
            .insert(model.to_string(), SystemTime::now());
    }

    /// Lets one generation request in: counts it for `model`, draws the simulated failure
    /// (500, before any work), then takes a slot: at once, or 429 (overflow `reject`), or after
    /// waiting (overflow `queue`). `key` identifies the request for seeded failure draws: the
    /// n-th request with the same key gets the same outcome on every run.
    pub async fn admit(
        self: &Arc<Self>,
        key: u64,
        model: &str,
        images: u64,
    ) -> Result<Slot, ApiError> {
        let error_rate = self.knobs().error_rate;
        {
            let mut inner = lock(&self.inner);
            *inner.stats.by_model.entry(model.to_string()).or_insert(0) += 1;
            inner.stats.images_received += images;
            inner.last_used.insert(model.to_string(), SystemTime::now());
            if self.draw_failure(&mut inner, key, error_rate) {
                inner.stats.errors_500 += 1;
                return Err(ApiError::Simulated);
            }
        }
        let permit = match &self.slots {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => match self.overflow {
                    Overflow::Reject429 => {
                        lock(&self.inner).stats.rejected_429 += 1;
                        return Err(ApiError::Busy);
                    }
                    Overflow::Queue => {
                        let _waiting = Waiting::new(self);
                        Some(
                            slots
                                .clone()
                                .acquire_owned()
                                .await
                                .map_err(|_| ApiError::Busy)?,
                        )
                    }
                },
            },
        };
        let mut inner = lock(&self.inner);
        let s = &mut inner.stats;
        s.in_flight += 1;
        s.max_in_flight_seen = s.max_in_flight_seen.max(s.in_flight);
        Ok(Slot {
            sim: self.clone(),
            _permit: permit,
        })
    }

    fn draw_failure(&self, inner: &mut Inner, key: u64, rate: f64) -> bool {
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        match self.seed {
            Some(seed) => {
                let count = inner.draws.entry(key).or_insert(0);
                let n = *count;
                *count += 1;
                let x = text::splitmix64(seed ^ text::splitmix64(key ^ text::splitmix64(n)));
                text::unit_f64(x) < rate
            }
            None => rand::random::<f64>() < rate,
        }
    }
}

/// A taken generation slot; releases it (and the in-flight count) when dropped, e.g. when
/// the response is complete or the client went away.
#[derive(Debug)]
pub struct Slot {
    sim: Arc<Sim>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The count drops before the permit (a field) is released, so the next holder
        // never sees a stale count above the limit.
        let mut inner = lock(&self.sim.inner);
        inner.stats.in_flight = inner.stats.in_flight.saturating_sub(1);
    }
}

/// Counts a request as queued while it waits for a slot.
struct Waiting<'a> {
    sim: &'a Sim,
}

impl<'a> Waiting<'a> {
    fn new(sim: &'a Sim) -> Waiting<'a> {
        let mut inner = lock(&sim.inner);
        let s = &mut inner.stats;
        s.queued += 1;
        s.max_queued_seen = s.max_queued_seen.max(s.queued);
        Waiting { sim }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut inner = lock(&self.sim.inner);
        inner.stats.queued = inner.stats.queued.saturating_sub(1);
    }
}
