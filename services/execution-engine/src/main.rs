//! `execution-engine` binary: parses flags and calls [`execution_engine::run`].

use clap::Parser;
use gleitzeit_runtime::CommonArgs;

/// Gleitzeit execution-engine: dispatches ready tasks to providers.
///
/// Leases ready tasks from the queue-manager and runs them on providers with free slots.
#[derive(Debug, Parser)]
#[command(name = "execution-engine", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    /// The most tasks sent to a provider, as a multiple of its capacity: as many as cover
    /// ~25 ms of its work are sent, so trivial tasks get this many and slow ones 2 (1: strict
    /// priority order, nothing waits at a provider).
    #[arg(long, env = "GLEITZEIT_PREFETCH", default_value_t = execution_engine::DEFAULT_PREFETCH)]
    prefetch: u32,
}

// One thread: the service relays in microseconds per message, and a multi-thread runtime
// handed each wake-up to the other thread (measured: a chain hop 1.89 → 1.69 ms, 10,000
// tasks 13 % faster; docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let log_format = args.common.log_format;
    let config = execution_engine::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
        prefetch: args.prefetch,
        api_key: None,
    };
    gleitzeit_runtime::serve(
        "execution-engine",
        gleitzeit_runtime::Footprint::Relay,
        log_format,
        |shutdown| execution_engine::run(config, shutdown),
    )
    .await
}
