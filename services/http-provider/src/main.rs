//! `http-provider` binary: parses flags and calls [`http_provider::run`].

use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use gleitzeit_protocol::limits::MAX_OUTCOME_BYTES;
use gleitzeit_runtime::CommonArgs;
use http_provider::hosts::HostPolicy;
use http_provider::request::Limits;
use http_provider::secrets::SecretPolicy;

/// Longest request timeout that can be configured: a day.
const TIMEOUT_CEILING_SECS: f64 = 24.0 * 3600.0;

/// Gleitzeit http-provider: runs `http/request` tasks (docs/http.md).
///
/// Every host is allowed except link-local addresses (169.254.0.0/16, fe80::/10: cloud
/// metadata) unless --allow-hosts narrows the list; --deny-hosts refuses hosts, wildcards
/// (`*.example.com`), addresses and CIDR blocks. Tasks may name only the environment variables
/// listed in --secret-env for their secret headers.
#[derive(Debug, Parser)]
#[command(name = "http-provider", version)]
struct Args {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    drain: gleitzeit_runtime::DrainArgs,
    /// Requests at once.
    #[arg(long, env = "GLEITZEIT_HTTP_CAPACITY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    capacity: u32,
    /// The only hosts tasks may reach, comma-separated: names, `*.domain`, addresses, CIDR
    /// blocks (default: every host).
    #[arg(long, env = "GLEITZEIT_HTTP_ALLOW_HOSTS", value_delimiter = ',')]
    allow_hosts: Vec<String>,
    /// Hosts tasks may not reach, comma-separated (as --allow-hosts); deny wins.
    #[arg(long, env = "GLEITZEIT_HTTP_DENY_HOSTS", value_delimiter = ',')]
    deny_hosts: Vec<String>,
    /// Let tasks reach link-local addresses (169.254.0.0/16, fe80::/10), refused by default.
    #[arg(long, env = "GLEITZEIT_HTTP_ALLOW_LINK_LOCAL")]
    allow_link_local: bool,
    /// Environment variables tasks may name in `secret_headers`, comma-separated (`NAME`, or
    /// `PREFIX_*`); none by default, `GLEITZEIT_*` never.
    #[arg(long, env = "GLEITZEIT_HTTP_SECRET_ENV", value_delimiter = ',')]
    secret_env: Vec<String>,
    /// Timeout of requests that name none, in seconds.
    #[arg(long, env = "GLEITZEIT_HTTP_DEFAULT_TIMEOUT", default_value = "30", value_parser = seconds)]
    default_timeout: Duration,
    /// Longest `timeout` a task may ask for, in seconds (more fails with GZ7011).
    #[arg(long, env = "GLEITZEIT_HTTP_MAX_TIMEOUT", default_value = "300", value_parser = seconds)]
    max_timeout: Duration,
    /// Largest response body, in bytes: the default and the upper bound of a task's
    /// `max_bytes` (at most 16 MiB, the size of a task outcome).
    #[arg(long, env = "GLEITZEIT_HTTP_MAX_BYTES", default_value_t = 10 << 20,
          value_parser = clap::value_parser!(u64).range(1..=MAX_OUTCOME_BYTES as u64))]
    max_bytes: u64,
}

/// Seconds, a finite number within `0 < s <= a day`.
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

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let usage = |message: String| -> ! {
        Args::command()
            .error(clap::error::ErrorKind::ValueValidation, message)
            .exit()
    };
    if args.default_timeout > args.max_timeout {
        usage("--default-timeout is longer than --max-timeout".into());
    }
    let hosts = HostPolicy::new(&args.allow_hosts, &args.deny_hosts, args.allow_link_local)
        .unwrap_or_else(|e| usage(e.to_string()));
    let secrets = SecretPolicy::new(&args.secret_env).unwrap_or_else(|e| usage(e.to_string()));
    let log_format = args.common.log_format;
    let config = http_provider::Config {
        hub_url: args.common.hub_url,
        component_id: args.common.component_id,
        grace: args.drain.drain_grace,
        capacity: args.capacity,
        limits: Limits {
            default_timeout: args.default_timeout,
            max_timeout: args.max_timeout,
            max_bytes: args.max_bytes,
        },
        hosts,
        secrets,
        api_key: None,
    };
    gleitzeit_runtime::serve(
        "http-provider",
        gleitzeit_runtime::Footprint::Relay,
        log_format,
        |shutdown| http_provider::run(config, shutdown),
    )
    .await
}
