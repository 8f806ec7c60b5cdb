//! `gz` (also installed as `gleitzeit`, the original's name): the Gleitzeit command-line
//! interface. The binaries `src/main.rs` and `src/bin/gleitzeit.rs` both call [`main`].
//!
//! Exit codes: 0 success; 1 the operation or workflow failed; 2 invalid usage or an invalid
//! workflow file; 3 the hub is unreachable (GZ1010). Errors are printed as `GZnnnn: message`
//! with a hint, on stderr (or as JSON on stdout with `--json`).

#![forbid(unsafe_code)]

mod attach;
mod auth;
mod batch;
mod bench;
mod bench_celery;
mod credentials;
mod errors;
mod events;
mod follow;
mod functions;
mod health;
mod inspect;
mod logs;
mod monitor;
mod node;
mod output;
mod procstat;
mod providers;
mod render;
mod stats;
mod status;
mod suite;
mod watching;
mod workflow;

use clap::{Parser, Subcommand};
use gleitzeit_protocol::GzError;
use gleitzeit_runtime::{LogFormat, DEFAULT_HUB_URL};

/// Gleitzeit: run workflows of LLM and Python tasks across many machines.
#[derive(Debug, Parser)]
#[command(name = "gz", version, propagate_version = true)]
struct Cli {
    /// URL of the central hub; several hubs of one mesh comma-separated (the first that
    /// answers is used).
    #[arg(long, global = true, env = "GLEITZEIT_HUB_URL", default_value = DEFAULT_HUB_URL)]
    hub_url: String,
    /// Log format of services started by this command.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// API key to present (default: GLEITZEIT_API_KEY, the saved login, or the local
    /// suite's key).
    #[arg(long, global = true, env = "GLEITZEIT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show hub health and the component table.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Start the hub and one of each service locally (binaries beside `gz`).
    Start(suite::StartArgs),
    /// Stop a suite started with `gz start --detach` (asks the hub to stop everything).
    Stop,
    /// Run the central hub in the foreground.
    Hub(suite::HubArgs),
    /// LLM endpoints: health, load, models, latency, cooldown.
    Providers {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Measure throughput, chain latency and big-workflow time and memory on a private suite.
    Bench(bench::BenchArgs),
    /// The error catalogue: `list [--domain D] [--severity S]`, `search TEXT`, `show CODE`.
    Errors(errors::ErrorsArgs),
    /// Check a workflow file and list every problem (exit 2 when invalid).
    Validate(workflow::ValidateArgs),
    /// Run a workflow file and wait for it (starts a local suite if no hub answers).
    Run(Box<workflow::RunArgs>),
    /// Submit a workflow file to a running hub and print its id.
    Submit(workflow::SubmitArgs),
    /// Follow a workflow's events until it finishes.
    Watch(workflow::WatchArgs),
    /// Show a workflow or a task.
    Inspect(inspect::InspectArgs),
    /// List recent workflows.
    List(inspect::ListArgs),
    /// Cancel a workflow (running tasks are stopped).
    Cancel(inspect::CancelArgs),
    /// API keys and users: init, login, status, logout, user create|list, key
    /// create|list|revoke.
    Auth(auth::AuthArgs),
    /// The event stream: a workflow's events, recent ones, or everything live (`--follow`).
    Events(events::EventsArgs),
    /// The local suite's service logs (from the data dir), filtered; `--follow` to tail.
    Logs(logs::LogsArgs),
    /// A live terminal view: components, endpoints, workflows, tasks per second.
    Monitor(monitor::MonitorArgs),
    /// What the suite did over a recent period: workflows, tasks, durations, throughput.
    Stats(stats::StatsArgs),
    /// Batch results: `gz batch results ID --format jsonl|csv|md`.
    Batch(batch::BatchArgs),
    /// One verdict for scripts: exit 0 healthy, 1 degraded, 2 down.
    Health(health::HealthArgs),
    /// Named functions (`python/function`) the connected providers declare.
    Functions(functions::FunctionsArgs),
    /// Print the wire protocol as one JSON Schema document (every event's payload and reply;
    /// the same as docs/schema/events.json).
    Schema,
}

impl Command {
    /// Whether `--json` was given (errors are then printed as JSON on stdout).
    fn json(&self) -> bool {
        match self {
            Command::Status { json } | Command::Providers { json } => *json,
            Command::Errors(a) => a.json,
            Command::Validate(a) => a.json,
            Command::Run(a) => a.json,
            Command::Submit(a) => a.json,
            Command::Watch(a) => a.json,
            Command::Inspect(a) => a.json(),
            Command::List(a) => a.json,
            Command::Cancel(a) => a.json,
            Command::Auth(a) => a.json(),
            Command::Bench(a) => a.json,
            Command::Functions(a) => a.json(),
            Command::Health(a) => a.json,
            Command::Batch(_) => false,
            Command::Events(a) => a.json,
            Command::Logs(a) => a.json,
            Command::Monitor(a) => a.json,
            Command::Stats(a) => a.json || a.format == "json",
            Command::Start(_) | Command::Stop | Command::Hub(_) | Command::Schema => false,
        }
    }
}

/// A CLI failure: the error and the exit code it maps to.
pub struct Failure {
    error: GzError,
    exit: u8,
}

impl From<GzError> for Failure {
    fn from(error: GzError) -> Self {
        use gleitzeit_protocol::errors::ErrorCode;
        // 3: no hub; 2: the input is wrong (validation: GZ7xxx, GZ9xxx, and the workflow
        // errors a user fixes in the file); 1: everything else.
        let code = ErrorCode::from_code(&error.code);
        let exit = match code {
            Some(ErrorCode::HubUnreachable) => 3,
            Some(
                ErrorCode::ValidationFailed | ErrorCode::CircularDependency | ErrorCode::ParseError,
            ) => 2,
            _ if error.code.starts_with("GZ7") || error.code.starts_with("GZ9") => 2,
            _ => 1,
        };
        Failure { error, exit }
    }
}

/// Result of a command: the exit code on success (a failed workflow is a success of the
/// command that still exits 1).
pub type CmdResult = Result<u8, Failure>;

/// Runs the command line of this process (`gz …` or `gleitzeit …`) and returns its exit code.
pub fn main() -> std::process::ExitCode {
    gleitzeit_runtime::configure_allocator(gleitzeit_runtime::Footprint::Relay);
    quiet_on_broken_pipe();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("GZ8001: cannot start the async runtime: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// `gz … | head` closes the pipe before gz is done: `println!` then panics. Like other Unix
/// tools killed by SIGPIPE, gz ends quietly with status 141 instead of printing a panic.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

async fn run() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    if std::env::var_os("GLEITZEIT_LOG_LEVEL").is_some() {
        // Diagnostics of gz's own connection (reconnects, hubs tried) on stderr.
        gleitzeit_runtime::init_tracing(cli.log_format);
    }
    if cli.hub_url.contains(',') {
        // HTTP calls go to the first hub that answers; Socket.IO sessions get the whole
        // list (that hub first) and move to another hub of the mesh if theirs is lost.
        let urls = status::answering_first(&cli.hub_url).await;
        cli.hub_url = urls[0].clone();
        workflow::set_hub_list(urls);
    }
    if let Some(key) = cli.api_key.take().filter(|k| !k.is_empty()) {
        credentials::choose(key, gleitzeit_runtime::credentials::KeySource::Environment);
    }
    let json = cli.command.json();
    let result = match cli.command {
        Command::Status { json } => status::run(&cli.hub_url, json).await,
        Command::Start(args) => suite::start(&cli.hub_url, cli.log_format, args).await,
        Command::Stop => suite::stop(&cli.hub_url).await,
        Command::Hub(args) => suite::hub(&cli.hub_url, cli.log_format, args).await,
        Command::Errors(args) => errors::run(args),
        Command::Bench(args) => bench::run(args).await,
        Command::Providers { json } => providers::run(&cli.hub_url, json).await,
        Command::Functions(args) => functions::run(&cli.hub_url, args).await,
        Command::Health(args) => health::run(&cli.hub_url, args).await,
        Command::Batch(args) => batch::run(&cli.hub_url, args).await,
        Command::Events(args) => events::run(&cli.hub_url, args).await,
        Command::Logs(args) => logs::run(args).await,
        Command::Monitor(args) => monitor::run(&cli.hub_url, args).await,
        Command::Stats(args) => stats::run(&cli.hub_url, args).await,
        Command::Validate(args) => workflow::validate(args),
        Command::Run(args) => workflow::run(&cli.hub_url, cli.log_format, *args).await,
        Command::Submit(args) => workflow::submit(&cli.hub_url, args).await,
        Command::Watch(args) => workflow::watch(&cli.hub_url, args).await,
        Command::Inspect(args) => inspect::inspect(&cli.hub_url, args).await,
        Command::List(args) => inspect::list(&cli.hub_url, args).await,
        Command::Cancel(args) => inspect::cancel(&cli.hub_url, args).await,
        Command::Auth(args) => auth::run(&cli.hub_url, args).await,
        Command::Schema => output::schema(),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(f) => {
            output::print_error(&f.error, json);
            std::process::ExitCode::from(f.exit)
        }
    }
}
