//! `central-hub`: the Gleitzeit Socket.IO hub binary. Parses flags and calls [`central_hub::run`].

use std::time::Duration;

use clap::Parser;
use gleitzeit_runtime::LogFormat;

/// The Gleitzeit central hub: registry, router and event fan-out for all components.
#[derive(Debug, Parser)]
#[command(name = "central-hub", version)]
struct Args {
    /// Address to listen on. Keep it on loopback unless authentication is configured.
    #[arg(long, env = "GLEITZEIT_HUB_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free port).
    #[arg(long, env = "GLEITZEIT_HUB_PORT", default_value_t = 8000)]
    port: u16,
    /// Heartbeat interval announced to components, in seconds.
    #[arg(long, env = "GLEITZEIT_HEARTBEAT_INTERVAL", default_value_t = 5.0)]
    heartbeat_interval: f64,
    /// Silence (seconds) after which a component is removed; default 3 intervals.
    #[arg(long, env = "GLEITZEIT_HEARTBEAT_TIMEOUT")]
    heartbeat_timeout: Option<f64>,
    /// Join the hub mesh on this Redis: hubs given the same URL relay routes, rooms and
    /// their component tables to each other, so a component on any hub is reachable from
    /// every other.
    #[arg(long, env = "GLEITZEIT_HUB_REDIS_URL")]
    redis_url: Option<String>,
    /// This hub's id (must differ between hubs of one mesh; default: `hub-` and a random
    /// suffix).
    #[arg(long, env = "GLEITZEIT_HUB_ID")]
    hub_id: Option<String>,
    /// Whether connections must present an API key: `required` (default) or `off`
    /// (everyone is the anonymous admin; only on loopback unless --insecure-no-auth).
    #[arg(long, env = "GLEITZEIT_AUTH", default_value = "required")]
    auth: central_hub::AuthMode,
    /// Allow `--auth off` on an address beyond loopback. Anyone who reaches the port can
    /// then run code through the providers.
    #[arg(long, env = "GLEITZEIT_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Data dir holding the key store (`auth.db`) when there is no mesh Redis.
    #[arg(long, env = "GLEITZEIT_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// Browser origins allowed besides the hub's own, comma-separated
    /// (e.g. `http://localhost:5173`).
    #[arg(long, env = "GLEITZEIT_ALLOWED_ORIGINS", value_delimiter = ',')]
    allowed_origins: Vec<String>,
    /// PEM certificate chain for HTTPS/WSS (the hub's certificate first). Needs --tls-key.
    #[arg(long, env = "GLEITZEIT_TLS_CERT", value_name = "PATH")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "GLEITZEIT_TLS_KEY", value_name = "PATH")]
    tls_key: Option<std::path::PathBuf>,
    /// Once listening, write the address actually bound (e.g. `127.0.0.1:41237`) to this
    /// file: with `--port 0`, whoever started the hub learns its port without guessing.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<std::path::PathBuf>,
    /// Log format.
    #[arg(long, env = "GLEITZEIT_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// Seconds from a flag, held to 0.05 s ..= 1 day (NaN: 5 s).
fn seconds(v: f64) -> Duration {
    Duration::try_from_secs_f64(v.clamp(0.05, 86_400.0)).unwrap_or(Duration::from_secs(5))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let interval = seconds(args.heartbeat_interval);
    let tls = central_hub::TlsFiles::from_flags(args.tls_cert, args.tls_key);
    let config = central_hub::HubConfig {
        host: args.host,
        port: args.port,
        heartbeat_interval: interval,
        heartbeat_timeout: args.heartbeat_timeout.map(seconds).unwrap_or(interval * 3),
        mesh_redis_url: args.redis_url,
        auth: args.auth,
        insecure_no_auth: args.insecure_no_auth,
        data_dir: args.data_dir,
        allowed_origins: args.allowed_origins,
        ..Default::default()
    };
    let config = match args.hub_id {
        Some(hub_id) => central_hub::HubConfig { hub_id, ..config },
        None => config,
    };
    let ready_file = args.ready_file;
    gleitzeit_runtime::serve(
        "central-hub",
        gleitzeit_runtime::Footprint::Relay,
        args.log_format,
        |shutdown| async move {
            let tls = tls?;
            let hub = central_hub::bind(central_hub::HubConfig { tls, ..config }).await?;
            if let Some(path) = ready_file {
                gleitzeit_runtime::write_ready_file(&path, hub.local_addr())
                    .map_err(|source| central_hub::HubError::ReadyFile { path, source })?;
            }
            hub.serve(shutdown).await
        },
    )
    .await
}
