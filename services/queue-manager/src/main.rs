//! `queue-manager` binary: parses flags and calls [`queue_manager::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gleitzeit_runtime::CommonArgs;

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
    /// Keep workflow, task and result state in Redis at this URL (e.g. redis://host:6379)
    /// instead of the embedded store under --data-dir.
    #[arg(long, env = "GLEITZEIT_REDIS_URL")]
    redis_url: Option<String>,
    /// Seconds queued tasks wait for a provider of their method before failing with GZ2015.
    #[arg(long, env = "GLEITZEIT_PROVIDER_GRACE", default_value_t = 30.0)]
    provider_grace: f64,
    /// Seconds an engine may stay silent (no lease request, outcome or held-task report)
    /// while holding tasks before they are queued again. Engines report every 2 s.
    #[arg(long, env = "GLEITZEIT_LEASE_TIMEOUT", default_value_t = 15.0)]
    lease_timeout: f64,
    /// Most tasks one workflow may have; larger submissions are refused with GZ7012.
    #[arg(long, env = "GLEITZEIT_MAX_WORKFLOW_TASKS", default_value_t = gleitzeit_workflow::DEFAULT_MAX_TASKS)]
    max_workflow_tasks: usize,
    /// Most bytes one workflow's spec may have as JSON; larger submissions are refused with
    /// GZ7012. At most 32 MiB (the default) keeps every plan within one hub message.
    #[arg(long, env = "GLEITZEIT_MAX_WORKFLOW_BYTES", default_value_t = gleitzeit_workflow::DEFAULT_MAX_SPEC_BYTES)]
    max_workflow_bytes: usize,
}

/// Seconds from a flag as a duration within `min..=max` (NaN and out-of-range values are
/// clamped: a flag must never panic the service).
fn seconds(value: f64, min: f64, max: f64) -> Duration {
    let clamped = if value.is_nan() {
        min
    } else {
        value.clamp(min, max)
    };
    Duration::try_from_secs_f64(clamped).unwrap_or(Duration::from_secs_f64(min))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let log_format = args.common.log_format;
    let config = queue_manager::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
        data_dir: args
            .data_dir
            .unwrap_or_else(gleitzeit_runtime::default_data_dir),
        redis_url: args.redis_url.filter(|u| !u.is_empty()),
        provider_grace: seconds(args.provider_grace, 0.1, 86_400.0),
        lease_timeout: seconds(args.lease_timeout, 1.0, 86_400.0),
        limits: queue_manager::WorkflowLimits {
            max_tasks: args.max_workflow_tasks.max(1),
            max_spec_bytes: args.max_workflow_bytes.max(1024),
        },
        api_key: None,
    };
    gleitzeit_runtime::serve(
        "queue-manager",
        gleitzeit_runtime::Footprint::Holder,
        log_format,
        |shutdown| queue_manager::run(config, shutdown),
    )
    .await
}
