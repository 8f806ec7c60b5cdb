//! `python-provider` binary: parses flags and calls [`python_provider::run`].

use std::path::PathBuf;

use clap::Parser;
use gleitzeit_runtime::CommonArgs;

/// Gleitzeit python-provider: runs `python/execute` tasks in a pool of warm Python workers.
#[derive(Debug, Parser)]
#[command(name = "python-provider", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// Number of warm worker processes (0 = one per core).
    #[arg(long, env = "GLEITZEIT_PYTHON_WORKERS", default_value_t = 0)]
    workers: usize,
    /// Python executable.
    #[arg(long, env = "GLEITZEIT_PYTHON", default_value = "python3")]
    python: String,
    /// Working directory for tasks whose workflow folder is unknown.
    #[arg(long, env = "GLEITZEIT_PYTHON_CWD")]
    cwd: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let log_format = args.common.log_format;
    let config = python_provider::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
        workers: args.workers,
        python: args.python,
        default_cwd: args.cwd,
    };
    gleitzeit_runtime::serve("python-provider", log_format, |shutdown| {
        python_provider::run(config, shutdown)
    })
    .await
}
