//! `ollama-provider` binary: parses flags, loads the endpoints and calls [`ollama_provider::run`].

use std::path::PathBuf;

use clap::Parser;
use gleitzeit_runtime::CommonArgs;
use ollama_provider::config::{ProviderConfig, Strategy};

/// Gleitzeit ollama-provider: llm/chat, llm/generate (llm/complete), llm/vision and llm/embed
/// over many Ollama, OpenAI-compatible, Anthropic and Gemini endpoints, with load balancing,
/// failover, model routing and streaming.
///
/// Endpoints come from --config (YAML, see providers/ollama.yaml), else from
/// GLEITZEIT_OLLAMA_URLS (comma-separated), else http://127.0.0.1:11434.
#[derive(Debug, Parser)]
#[command(name = "ollama-provider", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Endpoint configuration file.
    #[arg(long, env = "GLEITZEIT_OLLAMA_CONFIG")]
    config: Option<PathBuf>,
    /// Comma-separated endpoint URLs (when no --config is given).
    #[arg(
        long,
        env = "GLEITZEIT_OLLAMA_URLS",
        default_value = "http://127.0.0.1:11434"
    )]
    urls: String,
    /// Slots per endpoint given by --urls.
    #[arg(long, env = "GLEITZEIT_OLLAMA_MAX_CONCURRENT", default_value_t = 4)]
    max_concurrent: u32,
    /// Routing strategy (overrides the file's).
    #[arg(long, env = "GLEITZEIT_OLLAMA_STRATEGY", value_enum)]
    strategy: Option<Strategy>,
    /// Pull missing models instead of failing with GZ2011.
    #[arg(long, env = "GLEITZEIT_OLLAMA_AUTO_PULL")]
    auto_pull: bool,
    /// Seconds between health checks (overrides the file's).
    #[arg(long, env = "GLEITZEIT_OLLAMA_HEALTH_INTERVAL")]
    health_interval: Option<f64>,
    #[command(flatten)]
    drain: gleitzeit_runtime::DrainArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let log_format = args.common.log_format;
    let provider = match &args.config {
        Some(path) => ProviderConfig::from_file(path).map_err(|e| e.to_string()),
        None => ProviderConfig::from_urls(&args.urls, args.max_concurrent),
    };
    let mut provider = match provider {
        Ok(p) => p,
        Err(e) => {
            gleitzeit_runtime::init_tracing(log_format);
            tracing::error!(
                "{}: {e}",
                gleitzeit_protocol::errors::ErrorCode::InvalidField
            );
            return std::process::ExitCode::from(2);
        }
    };
    if let Some(s) = args.strategy {
        provider.strategy = s;
    }
    if args.auto_pull {
        provider.auto_pull = true;
    }
    if let Some(h) = args.health_interval.filter(|h| *h > 0.0) {
        provider.health_interval = h;
    }
    let config = ollama_provider::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
        grace: args.drain.drain_grace,
        provider,
        api_key: None,
    };
    gleitzeit_runtime::serve(
        "ollama-provider",
        gleitzeit_runtime::Footprint::Relay,
        log_format,
        |shutdown| ollama_provider::run(config, shutdown),
    )
    .await
}
