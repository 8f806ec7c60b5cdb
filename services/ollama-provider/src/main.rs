//! `ollama-provider` binary: parses flags and calls [`ollama_provider::run`].

use clap::Parser;
use gleitzeit_runtime::CommonArgs;

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
    let log_format = args.common.log_format;
    let config = ollama_provider::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
    };
    gleitzeit_runtime::serve("ollama-provider", log_format, |shutdown| {
        ollama_provider::run(config, shutdown)
    })
    .await
}
