//! `ollama-provider` binary: parses flags and calls [`ollama_provider::run`].

use clap::Parser;
use gleitzeit_runtime::{init_tracing, signal_shutdown, CommonArgs, Shutdown};

/// Gleitzeit ollama-provider: llm/* methods over Ollama and OpenAI-compatible endpoints.
///
/// Endpoint routing, failover and streaming arrive with the LLM issue; today it registers its methods with capacity 0 and answers pings.
#[derive(Debug, Parser)]
#[command(name = "ollama-provider", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.common.log_format);
    let config = ollama_provider::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
    };
    match ollama_provider::run(config, Shutdown::from_future(signal_shutdown())).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "ollama-provider failed");
            std::process::ExitCode::FAILURE
        }
    }
}
