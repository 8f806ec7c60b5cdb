//! `python-provider` binary: parses flags and calls [`python_provider::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser;
use clap::{CommandFactory, Parser};
use gleitzeit_runtime::CommonArgs;
use python_provider::limits::{Limits, MAX_OUTPUT_CEILING};

/// Longest task timeout that can be configured: 30 days.
const TIMEOUT_CEILING_SECS: f64 = 30.0 * 24.0 * 3600.0;

/// Gleitzeit python-provider: runs `python/execute` tasks in a pool of warm Python workers.
#[derive(Debug, Parser)]
#[command(name = "python-provider", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    drain: gleitzeit_runtime::DrainArgs,
    /// Number of warm worker processes (0 = one per core).
    #[arg(long, env = "GLEITZEIT_PYTHON_WORKERS", default_value_t = 0,
          value_parser = clap::value_parser!(u16).map(usize::from))]
    workers: usize,
    /// Python executable.
    #[arg(long, env = "GLEITZEIT_PYTHON", default_value = "python3")]
    python: String,
    /// Where each task's own working folder is made, holding the files it names; it is
    /// removed when the task ends, or kept empty for the next task (default: the system
    /// temp dir, $TMPDIR). `--cwd` and
    /// GLEITZEIT_PYTHON_CWD are older names of the same setting.
    #[arg(long, visible_alias = "cwd", env = "GLEITZEIT_PYTHON_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// Data dir: a folder tasks' `file` and `cwd` may use unless --allowed-roots is given
    /// (default: the user's data dir, e.g. ~/.local/share/gleitzeit).
    #[arg(long, env = "GLEITZEIT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The only folders tasks' `file` and `cwd` may resolve into besides each task's own
    /// folder, separated by `:` or `,` (default: the data dir, --work-dir, and the workflow
    /// folder an old client's task names).
    #[arg(long, env = "GLEITZEIT_PYTHON_ROOTS", value_delimiter = ',')]
    allowed_roots: Option<Vec<String>>,
    /// Timeout of tasks that name none, in seconds.
    #[arg(long, env = "GLEITZEIT_PYTHON_DEFAULT_TIMEOUT", default_value = "300",
          value_parser = seconds)]
    default_timeout: Duration,
    /// Longest timeout a task may ask for, in seconds (more fails with GZ7011).
    #[arg(long, env = "GLEITZEIT_PYTHON_MAX_TIMEOUT", default_value = "86400",
          value_parser = seconds)]
    max_timeout: Duration,
    /// Address space of each worker and the processes it starts, in MiB (0 = unlimited).
    #[arg(long, env = "GLEITZEIT_PYTHON_MAX_MEMORY", default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    max_memory: u64,
    /// Largest file a task may write, in MiB (0 = unlimited).
    #[arg(long, env = "GLEITZEIT_PYTHON_MAX_FILE_SIZE", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    max_file_size: u64,
    /// Processes and threads a task may start on top of the user's count (0 = unlimited;
    /// not enforced for root).
    #[arg(long, env = "GLEITZEIT_PYTHON_MAX_PROCESSES", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(0..=1 << 22))]
    max_processes: u64,
    /// Largest output (and result) of a task, in MiB; more is truncated and fails with GZ2026.
    #[arg(long, env = "GLEITZEIT_PYTHON_MAX_OUTPUT", default_value_t = 16,
          value_parser = clap::value_parser!(u64).range(1..=(MAX_OUTPUT_CEILING >> 20) as u64))]
    max_output: u64,
}

/// Seconds, a finite number within `0 < s <= 30 days`.
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    if !(secs > 0.0 && secs <= TIMEOUT_CEILING_SECS) {
        return Err(format!(
            "out of range: give more than 0 and at most {TIMEOUT_CEILING_SECS} seconds"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// `0` means unlimited; otherwise MiB in bytes.
fn mebibytes(n: u64) -> Option<u64> {
    (n > 0).then_some(n << 20)
}

// One thread: the service hands tasks to its Python workers in microseconds per message, and a multi-thread runtime
// handed each wake-up to the other thread (measured: a chain hop 1.89 → 1.69 ms, 10,000
// tasks 13 % faster; docs/performance.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    if args.default_timeout > args.max_timeout {
        Args::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--default-timeout is longer than --max-timeout",
            )
            .exit();
    }
    let log_format = args.common.log_format;
    let allowed_roots = args.allowed_roots.map(|roots| {
        roots
            .iter()
            .flat_map(|r| r.split(':'))
            .filter(|r| !r.is_empty())
            .map(PathBuf::from)
            .collect()
    });
    let config = python_provider::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
        grace: args.drain.drain_grace,
        workers: args.workers,
        python: args.python,
        work_dir: args
            .work_dir
            .or_else(|| std::env::var_os("GLEITZEIT_PYTHON_CWD").map(PathBuf::from)),
        data_dir: args
            .data_dir
            .unwrap_or_else(python_provider::confine::default_data_dir),
        allowed_roots,
        limits: Limits {
            address_space: mebibytes(args.max_memory),
            file_size: mebibytes(args.max_file_size),
            processes: (args.max_processes > 0).then_some(args.max_processes),
            max_output: (args.max_output << 20) as usize,
        },
        default_timeout: args.default_timeout,
        max_timeout: args.max_timeout,
        api_key: None,
    };
    gleitzeit_runtime::serve(
        "python-provider",
        gleitzeit_runtime::Footprint::Relay,
        log_format,
        |shutdown| python_provider::run(config, shutdown),
    )
    .await
}
