//! `queue-manager` binary: parses flags and calls [`queue_manager::run`].

use clap::Parser;
use gleitzeit_runtime::{init_tracing, signal_shutdown, CommonArgs, Shutdown};

/// Gleitzeit queue-manager: owns workflow and task state.
///
/// Workflow submission, persistence and scheduling arrive with the workflows issue; today it registers and answers pings.
#[derive(Debug, Parser)]
#[command(name = "queue-manager", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.common.log_format);
    let config = queue_manager::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
    };
    match queue_manager::run(config, Shutdown::from_future(signal_shutdown())).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "queue-manager failed");
            std::process::ExitCode::FAILURE
        }
    }
}
