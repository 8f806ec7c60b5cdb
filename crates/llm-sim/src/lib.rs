//! `gleitzeit-llm-sim`: a test LLM server for end-to-end tests and benchmarks. It speaks
//! Ollama's HTTP API (`/api/chat`, `/api/generate`, `/api/embed`, `/api/tags`, `/api/pull`, …),
//! OpenAI's chat completions (`/v1/chat/completions`, `/v1/models`, `/v1/embeddings`),
//! Anthropic's Messages API (`/v1/messages`) and Gemini's `generateContent`
//! (`/v1beta/models/{model}:generateContent` and `:streamGenerateContent`), with
//! knobs for latency, throughput, concurrency limits and failures, and counters at
//! `GET /_sim/stats`. Beside the LLM APIs, `/http/*` serves plain endpoints for
//! testing `http/request` tasks (echo, text, big bodies, slow and flaky answers).
//!
//! Answers are deterministic: the reply to a prompt is `echo: <last user message>` (wrapped
//! as `{"reply":"echo: …"}` when JSON output is requested), streamed as whitespace-bounded
//! tokens whose concatenation equals the non-streamed reply. Embeddings are unit vectors
//! of [`EMBEDDING_DIMS`] floats derived from the text.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = gleitzeit_llm_sim::spawn(gleitzeit_llm_sim::SimConfig::default()).await?;
//! let base_url = sim.url(); // e.g. http://127.0.0.1:40123
//! # let _ = base_url;
//! let stats = sim.stats();
//! assert_eq!(stats.rejected_429, 0);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod admin;
mod anthropic;
mod error;
mod gemini;
mod ollama;
mod openai;
mod state;
mod stream;
mod text;
mod web;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, delete, get, post};
use axum::serve::ListenerExt;
use axum::Router;
use gleitzeit_runtime::{Shutdown, ShutdownTrigger};
use tokio::net::{TcpListener, ToSocketAddrs};

pub use admin::NAME_HEADER;
pub use state::SimStats;
pub use text::{embedding, reply_for, tokenize, EMBEDDING_DIMS};

/// What happens to a generation request when all `max_concurrent` slots are taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Answer 429 `{"error":"server busy"}` at once.
    #[default]
    Reject429,
    /// Wait for a free slot.
    Queue,
}

/// The simulator's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Served models (a name without tag means `:latest`).
    pub models: Vec<String>,
    /// Time to first token (and the whole pause of an embedding request).
    pub latency: Duration,
    /// Token rate after the first token; 0 means all tokens at once.
    pub tokens_per_second: f64,
    /// Generation requests served at once; 0 means unlimited.
    pub max_concurrent: usize,
    /// What happens beyond `max_concurrent`.
    pub overflow: Overflow,
    /// Probability (0..=1) of answering a generation request 500 before doing any work.
    pub error_rate: f64,
    /// Makes the failure draws reproducible: the n-th request with a given endpoint and body
    /// gets the same outcome on every run, whatever the interleaving.
    pub seed: Option<u64>,
    /// The server's name (in stats and the `x-llm-sim` response header).
    pub name: String,
    /// If set, every API request must carry the key (401 otherwise): as
    /// `Authorization: Bearer <key>`, in `x-api-key` on Anthropic's routes, in
    /// `x-goog-api-key` on Gemini's; `/_sim/*` stays open.
    pub api_key: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            models: vec![
                "llama3.2:latest".to_string(),
                "llava:latest".to_string(),
                "nomic-embed-text:latest".to_string(),
            ],
            latency: Duration::from_millis(20),
            tokens_per_second: 200.0,
            max_concurrent: 0,
            overflow: Overflow::Reject429,
            error_rate: 0.0,
            seed: None,
            name: "llm-sim".to_string(),
            api_key: None,
        }
    }
}

/// Binds `addr` (use port 0 for a free port); returns the listener and the bound address.
pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

fn router(sim: Arc<state::Sim>) -> Router {
    Router::new()
        .route("/", get(ollama::root))
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/embed", post(ollama::embed))
        .route("/api/embeddings", post(ollama::embeddings))
        .route("/api/pull", post(ollama::pull))
        .route("/api/delete", delete(ollama::delete))
        .route("/v1/models", get(anthropic::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/messages", post(anthropic::messages))
        .route("/v1beta/models", get(gemini::models))
        .route("/v1beta/models/{target}", post(gemini::model_action))
        .route("/http/echo", any(web::echo))
        .route("/http/text", get(web::text))
        .route("/http/big", get(web::big))
        .route("/http/slow", get(web::slow))
        .route("/http/flaky", any(web::flaky))
        .route("/http/status/{code}", any(web::status))
        .route("/http/redirect", any(web::redirect))
        .route("/_sim/stats", get(admin::stats))
        .route("/_sim/reset", post(admin::reset))
        .route(
            "/_sim/config",
            get(admin::get_config).post(admin::set_config),
        )
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            admin::gate,
        ))
        .with_state(sim)
}

async fn serve_state(
    listener: TcpListener,
    sim: Arc<state::Sim>,
    shutdown: Shutdown,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        name = %sim.name,
        max_concurrent = sim.max_concurrent,
        overflow = ?sim.overflow,
        knobs = ?sim.knobs(),
        "llm-sim listening"
    );
    // Tokens are small writes: without TCP_NODELAY Nagle's algorithm would bunch them.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    tracing::info!(%addr, "llm-sim stopped");
    Ok(())
}

/// Serves the simulator on `listener` until `shutdown` fires (open streams are finished).
pub async fn serve(listener: TcpListener, config: SimConfig, shutdown: Shutdown) -> io::Result<()> {
    serve_state(listener, Arc::new(state::Sim::new(config)), shutdown).await
}

/// A simulator running in this process (see [`spawn`]).
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    sim: Arc<state::Sim>,
    trigger: ShutdownTrigger,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

/// Starts a simulator on `127.0.0.1:<free port>` in a background task.
pub async fn spawn(config: SimConfig) -> io::Result<SimHandle> {
    let (listener, addr) = bind("127.0.0.1:0").await?;
    let sim = Arc::new(state::Sim::new(config));
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(serve_state(listener, sim.clone(), shutdown));
    Ok(SimHandle {
        addr,
        sim,
        trigger,
        task: Some(task),
    })
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, the base URL for both APIs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The counters (same as `GET /_sim/stats`).
    pub fn stats(&self) -> SimStats {
        self.sim.stats()
    }

    /// Zeroes the counters (same as `POST /_sim/reset`).
    pub fn reset(&self) {
        self.sim.reset();
    }

    /// Changes latency, token rate and/or error rate at run time.
    pub fn set_knobs(
        &self,
        latency: Option<Duration>,
        tokens_per_second: Option<f64>,
        error_rate: Option<f64>,
    ) {
        self.sim
            .update_knobs(latency, tokens_per_second, error_rate);
    }

    /// Stops the server, waiting for open responses to finish.
    pub async fn shutdown(mut self) {
        self.trigger.fire();
        let Some(task) = self.task.take() else {
            return;
        };
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "llm-sim ended with an error"),
            Err(e) => tracing::warn!(error = %e, "llm-sim task failed"),
        }
    }
}

impl Drop for SimHandle {
    /// A handle dropped without [`SimHandle::shutdown`] still stops its server.
    fn drop(&mut self) {
        self.trigger.fire();
    }
}
