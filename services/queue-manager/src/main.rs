//! `queue-manager` binary: parses flags and calls [`queue_manager::run`].

use std::path::PathBuf;

use clap::Parser;
use gleitzeit_runtime::{init_tracing, signal_shutdown, CommonArgs, Shutdown};

/// Gleitzeit queue-manager: owns workflow and task state (embedded SQLite store under
/// --data-dir), queues ready tasks by priority, schedules retries, and resumes unfinished
/// workflows after a restart.
#[derive(Debug, Parser)]
#[command(name = "queue-manager", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Folder of the embedded store (default: the user's data dir, e.g. ~/.local/share/gleitzeit).
    #[arg(long, env = "GLEITZEIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    init_tracing(args.common.log_format);
    let config = queue_manager::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
        data_dir: args
            .data_dir
            .unwrap_or_else(queue_manager::default_data_dir),
    };
    match queue_manager::run(config, Shutdown::from_future(signal_shutdown())).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "queue-manager failed");
            std::process::ExitCode::FAILURE
        }
    }
}
