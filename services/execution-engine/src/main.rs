//! `execution-engine` binary: parses flags and calls [`execution_engine::run`].

use clap::Parser;
use gleitzeit_runtime::{init_tracing, signal_shutdown, CommonArgs, Shutdown};

/// Gleitzeit execution-engine: dispatches ready tasks to providers.
///
/// Dispatch, timeouts and retries arrive with the workflows issue; today it registers and answers pings.
#[derive(Debug, Parser)]
#[command(name = "execution-engine", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.common.log_format);
    let config = execution_engine::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
    };
    match execution_engine::run(config, Shutdown::from_future(signal_shutdown())).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "execution-engine failed");
            std::process::ExitCode::FAILURE
        }
    }
}
