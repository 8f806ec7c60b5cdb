//! Endpoint configuration: `providers/ollama.yaml`, or `GLEITZEIT_OLLAMA_URLS` for the simple
//! case (a comma-separated list of URLs, each with the default settings).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// How a request picks among the endpoints that can serve it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Lowest in-flight share of `max_concurrent` (default).
    #[default]
    LeastLoaded,
    /// In turn.
    RoundRobin,
    /// Lowest moving average of response time.
    FastestResponse,
    /// Endpoints that already have the model loaded first, then least loaded.
    ModelAffinity,
}

/// The API an endpoint speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Ollama's API (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`).
    #[default]
    Ollama,
    /// OpenAI-compatible servers (vLLM, llama.cpp server, LM Studio): `/v1/chat/completions`,
    /// `/v1/embeddings`, `/v1/models`.
    Openai,
    /// Anthropic's Messages API (`/v1/messages`, `/v1/models`); the key goes in `x-api-key`.
    /// No embeddings.
    Anthropic,
    /// Google Gemini (`/v1beta/models/{model}:generateContent`, `/v1beta/models`); the key
    /// goes in `x-goog-api-key`. No embeddings.
    Gemini,
}

impl Kind {
    /// Its name in the configuration (`ollama`, `openai`, `anthropic`, `gemini`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ollama => "ollama",
            Kind::Openai => "openai",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gemini",
        }
    }

    /// Whether endpoints of this kind serve `llm/embed`.
    pub fn embeds(self) -> bool {
        matches!(self, Kind::Ollama | Kind::Openai)
    }
}

fn default_max_concurrent() -> u32 {
    4
}
/// The longest timeout, health interval or cooldown accepted (a week): every one becomes a
/// `Duration`, which NaN, infinite or huge numbers cannot.
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// Whether `seconds` is finite, positive (or 0 when allowed) and at most `max`.
fn seconds_in(seconds: f64, zero_allowed: bool, max: f64) -> bool {
    seconds.is_finite() && (seconds > 0.0 || (zero_allowed && seconds == 0.0)) && seconds <= max
}

fn default_timeout() -> f64 {
    300.0
}
fn default_health_interval() -> f64 {
    5.0
}
fn default_cooldown() -> f64 {
    10.0
}
fn default_failure_threshold() -> u32 {
    3
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Display name (default: host:port of the URL).
    #[serde(default)]
    pub name: String,
    /// Base URL, e.g. `http://gpu-1:11434`.
    pub url: String,
    /// API kind.
    #[serde(default)]
    pub kind: Kind,
    /// Higher is preferred among equals.
    #[serde(default)]
    pub priority: i32,
    /// Requests at once on this endpoint.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: u32,
    /// Models it serves; empty = whatever `/api/tags` (or `/v1/models`) lists.
    #[serde(default)]
    pub models: Vec<String>,
    /// Tags a task can require (`tags: [gpu]`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Request timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout: f64,
    /// Name of an environment variable holding an API key: sent as a bearer token (`ollama`,
    /// `openai`), in `x-api-key` (`anthropic`) or in `x-goog-api-key` (`gemini`). Read when a
    /// request is made; the value is never logged nor shown.
    #[serde(default)]
    pub api_key_env: Option<String>,
}

/// The whole provider configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Routing strategy.
    #[serde(default)]
    pub strategy: Strategy,
    /// Pull a missing model (`POST /api/pull`) instead of failing with GZ2011.
    #[serde(default)]
    pub auto_pull: bool,
    /// Seconds between health checks.
    #[serde(default = "default_health_interval")]
    pub health_interval: f64,
    /// Seconds an endpoint that keeps failing is left alone before a probe.
    #[serde(default = "default_cooldown")]
    pub cooldown: f64,
    /// Consecutive failures that put an endpoint into cooldown.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// The endpoints.
    pub endpoints: Vec<EndpointConfig>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid provider config {path}: {message}")]
    Invalid {
        /// Path.
        path: String,
        /// What is wrong (with line and column for YAML errors).
        message: String,
    },
}

impl ProviderConfig {
    /// Reads a YAML file.
    pub fn from_file(path: &Path) -> Result<ProviderConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses YAML text.
    pub fn from_yaml(text: &str) -> Result<ProviderConfig, String> {
        let mut cfg: ProviderConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        cfg.normalize()?;
        Ok(cfg)
    }

    /// Endpoints from a comma-separated URL list, each with default settings.
    pub fn from_urls(urls: &str, max_concurrent: u32) -> Result<ProviderConfig, String> {
        let endpoints = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| EndpointConfig {
                name: String::new(),
                url: u.to_string(),
                kind: Kind::Ollama,
                priority: 0,
                max_concurrent,
                models: Vec::new(),
                tags: Vec::new(),
                timeout: default_timeout(),
                api_key_env: None,
            })
            .collect();
        let mut cfg = ProviderConfig {
            strategy: Strategy::default(),
            auto_pull: false,
            health_interval: default_health_interval(),
            cooldown: default_cooldown(),
            failure_threshold: default_failure_threshold(),
            endpoints,
        };
        cfg.normalize()?;
        Ok(cfg)
    }

    fn normalize(&mut self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("no endpoints configured".into());
        }
        let mut names = std::collections::HashSet::new();
        for e in &mut self.endpoints {
            e.url = e.url.trim_end_matches('/').to_string();
            if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
                return Err(format!(
                    "endpoint url {:?} must start with http:// or https://",
                    gleitzeit_protocol::identity::redact_url(&e.url)
                ));
            }
            if e.name.is_empty() {
                // host:port and path, never the user:password of the URL.
                let rest = e.url.split("://").nth(1).unwrap_or(&e.url);
                e.name = rest.rsplit_once('@').map_or(rest, |(_, h)| h).to_string();
            }
            if e.max_concurrent == 0 {
                return Err(format!(
                    "endpoint {}: max_concurrent must be at least 1",
                    e.name
                ));
            }
            if !seconds_in(e.timeout, false, MAX_SECONDS) {
                return Err(format!(
                    "endpoint {}: timeout must be more than 0 and at most {MAX_SECONDS} seconds",
                    e.name
                ));
            }
            if !names.insert(e.name.clone()) {
                return Err(format!("duplicate endpoint name {:?}", e.name));
            }
        }
        if !seconds_in(self.health_interval, false, MAX_SECONDS)
            || !seconds_in(self.cooldown, true, MAX_SECONDS)
        {
            return Err(format!(
                "health_interval must be more than 0 and cooldown at least 0, both at most {MAX_SECONDS} seconds"
            ));
        }
        self.failure_threshold = self.failure_threshold.max(1);
        Ok(())
    }

    /// Sum of every endpoint's slots: the capacity the provider advertises.
    pub fn capacity(&self) -> u32 {
        self.endpoints
            .iter()
            .fold(0u32, |sum, e| sum.saturating_add(e.max_concurrent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let cfg = ProviderConfig::from_yaml(
            "strategy: model_affinity\nauto_pull: true\nendpoints:\n  - name: gpu\n    url: http://gpu:11434/\n    max_concurrent: 8\n    tags: [gpu]\n    models: [llama3.2:latest]\n  - url: http://cpu:8080\n    kind: openai\n    api_key_env: CPU_KEY\n",
        )
        .expect("valid");
        assert_eq!(cfg.strategy, Strategy::ModelAffinity);
        assert_eq!(cfg.endpoints[0].url, "http://gpu:11434");
        assert_eq!(cfg.endpoints[1].name, "cpu:8080");
        assert_eq!(cfg.endpoints[1].kind, Kind::Openai);
        assert_eq!(cfg.capacity(), 12);
    }

    #[test]
    fn hosted_kinds_parse_by_name() {
        let cfg = ProviderConfig::from_yaml(
            "endpoints:\n  - { name: claude, url: \"https://api.anthropic.com\", kind: anthropic, api_key_env: ANTHROPIC_API_KEY }\n  - { name: gem, url: \"https://generativelanguage.googleapis.com\", kind: gemini }\n",
        )
        .expect("valid");
        assert_eq!(cfg.endpoints[0].kind, Kind::Anthropic);
        assert_eq!(cfg.endpoints[1].kind.as_str(), "gemini");
        assert!(!cfg.endpoints[1].kind.embeds());
        assert!(
            ProviderConfig::from_yaml("endpoints:\n  - { url: \"http://a\", kind: claude }\n")
                .is_err()
        );
    }

    #[test]
    fn mistakes_are_reported() {
        assert!(ProviderConfig::from_yaml("endpoints: []\n").is_err());
        assert!(ProviderConfig::from_yaml("endpoints:\n  - url: gpu:11434\n").is_err());
        let typo =
            ProviderConfig::from_yaml("endpoints:\n  - url: http://a\n    max_concurent: 3\n");
        assert!(typo.is_err_and(|e| e.contains("max_concurent")));
        assert!(
            ProviderConfig::from_yaml("endpoints:\n  - url: http://a\n  - url: http://a\n")
                .is_err()
        );
    }

    #[test]
    fn poison_seconds_are_refused_not_panicked_on() {
        for bad in ["1e300", "-1", "0", ".nan", ".inf", "604801"] {
            let yaml = format!("endpoints:\n  - url: http://a\n    timeout: {bad}\n");
            assert!(ProviderConfig::from_yaml(&yaml).is_err(), "timeout {bad}");
        }
        assert!(
            ProviderConfig::from_yaml("cooldown: 1e19\nendpoints:\n  - url: http://a\n").is_err()
        );
        let big = "endpoints:\n  - url: http://a\n    max_concurrent: 4294967295\n  - url: http://b\n    max_concurrent: 9\n";
        assert_eq!(
            ProviderConfig::from_yaml(big).map(|c| c.capacity()),
            Ok(u32::MAX)
        );
    }

    #[test]
    fn url_lists_make_default_endpoints() {
        let cfg = ProviderConfig::from_urls("http://a:1, http://b:2,", 2).expect("valid");
        assert_eq!(cfg.endpoints.len(), 2);
        assert_eq!(cfg.capacity(), 4);
    }
}
