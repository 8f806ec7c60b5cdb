//! `dependency-resolver` binary: parses flags and calls [`dependency_resolver::run`].

use clap::Parser;
use gleitzeit_runtime::CommonArgs;

/// Gleitzeit dependency-resolver: readiness and parameter substitution.
///
/// Decides which tasks are ready and substitutes ${task.path} references in their parameters.
#[derive(Debug, Parser)]
#[command(name = "dependency-resolver", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
}

// One thread: the service plans in microseconds per message, and a multi-thread runtime
// handed each wake-up to the other thread (measured: a chain hop 1.89 → 1.69 ms, 10,000
// tasks 13 % faster; docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let log_format = args.common.log_format;
    let config = dependency_resolver::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
        api_key: None,
    };
    gleitzeit_runtime::serve(
        "dependency-resolver",
        gleitzeit_runtime::Footprint::Holder,
        log_format,
        |shutdown| dependency_resolver::run(config, shutdown),
    )
    .await
}
