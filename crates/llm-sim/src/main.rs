//! `gleitzeit-llm-sim`: runs the test LLM server. Parses flags, binds, prints
//! `listening on http://ADDR` as the first stdout line (and writes `ADDR` to the
//! `--ready-file`, which is what the launcher waits for) and serves until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gleitzeit_llm_sim::{Overflow, SimConfig};
use gleitzeit_runtime::LogFormat;

/// A test LLM server speaking Ollama's API, OpenAI chat completions, Anthropic's Messages API
/// and Gemini's generateContent; `/http/*` serves plain endpoints for testing HTTP tasks.
#[derive(Debug, Parser)]
#[command(name = "gleitzeit-llm-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free port; read it from the first stdout line or the
    /// ready file).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Once listening, write the address actually bound (e.g. `127.0.0.1:41237`) to this file.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<std::path::PathBuf>,
    /// Served models, comma-separated (a name without tag means `:latest`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "llama3.2:latest,llava:latest,nomic-embed-text:latest"
    )]
    models: Vec<String>,
    /// Time to first token, in milliseconds.
    #[arg(long, default_value_t = 20.0)]
    latency_ms: f64,
    /// Tokens per second after the first (0 = instant).
    #[arg(long, default_value_t = 200.0)]
    tokens_per_sec: f64,
    /// Generation requests served at once (0 = unlimited).
    #[arg(long, default_value_t = 0)]
    max_concurrent: usize,
    /// Beyond --max-concurrent: answer 429 (`reject`) or wait for a slot (`queue`).
    #[arg(long, value_enum, default_value = "reject")]
    overflow: OverflowArg,
    /// Probability (0..1) of answering a generation request 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Seed making the failure draws reproducible.
    #[arg(long)]
    seed: Option<u64>,
    /// Server name (in /_sim/stats and the x-llm-sim header).
    #[arg(long, default_value = "llm-sim")]
    name: String,
    /// Require the key on API requests: `Authorization: Bearer <key>`, Anthropic's
    /// `x-api-key` on `/v1/messages`, Gemini's `x-goog-api-key` on `/v1beta/*`.
    #[arg(long, env = "GLEITZEIT_SIM_API_KEY")]
    api_key: Option<String>,
    /// Log format (logs go to stderr).
    #[arg(long, env = "GLEITZEIT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum OverflowArg {
    Reject,
    Queue,
}

fn config(args: &Args) -> Result<SimConfig, String> {
    if !(0.0..=1.0).contains(&args.error_rate) {
        return Err(format!(
            "--error-rate must be within 0..1, got {}",
            args.error_rate
        ));
    }
    if !(args.tokens_per_sec.is_finite() && args.tokens_per_sec >= 0.0) {
        return Err(format!(
            "--tokens-per-sec must be >= 0, got {}",
            args.tokens_per_sec
        ));
    }
    let latency = Duration::try_from_secs_f64(args.latency_ms / 1000.0)
        .map_err(|_| format!("--latency-ms out of range: {}", args.latency_ms))?;
    Ok(SimConfig {
        models: args
            .models
            .iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect(),
        latency,
        tokens_per_second: args.tokens_per_sec,
        max_concurrent: args.max_concurrent,
        overflow: match args.overflow {
            OverflowArg::Reject => Overflow::Reject429,
            OverflowArg::Queue => Overflow::Queue,
        },
        error_rate: args.error_rate,
        seed: args.seed,
        name: args.name.clone(),
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    gleitzeit_runtime::configure_allocator(gleitzeit_runtime::Footprint::Relay);
    let args = Args::parse();
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gleitzeit-llm-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = format!("{}:{}", args.host, args.port);
    let ready_file = args.ready_file.clone();
    gleitzeit_runtime::serve(
        "gleitzeit-llm-sim",
        gleitzeit_runtime::Footprint::Relay,
        args.log_format,
        |shutdown| async move {
            let (listener, bound) = gleitzeit_llm_sim::bind(&addr)
                .await
                .map_err(|e| format!("cannot bind {addr}: {e}"))?;
            // The binary's contract: the first stdout line names the address.
            println!("listening on http://{bound}");
            if let Some(path) = &ready_file {
                gleitzeit_runtime::write_ready_file(path, bound)
                    .map_err(|e| format!("cannot write the ready file {}: {e}", path.display()))?;
            }
            gleitzeit_llm_sim::serve(listener, config, shutdown)
                .await
                .map_err(|e| e.to_string())
        },
    )
    .await
}
