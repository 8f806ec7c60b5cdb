//! What every Gleitzeit binary shares: logging setup ([`init_tracing`]), shutdown handling
//! ([`Shutdown`], [`signal_shutdown`]), the flags common to all services ([`CommonArgs`]),
//! the data dir ([`default_data_dir`]), where API keys come from ([`credentials`]), and
//! turning panics in spawned work into errors ([`catch_panic`]), and the lexical form of a
//! path that confinement checks compare ([`paths`]). Linking it makes mimalloc the binary's
//! allocator (`gleitzeit-alloc`).

#![forbid(unsafe_code)]

pub mod credentials;
mod panics;
pub mod paths;

pub use gleitzeit_alloc::configure as configure_allocator;
pub use gleitzeit_alloc::Footprint;
pub use panics::{catch_panic, catch_panic_sync};

use std::future::Future;
use std::path::PathBuf;

use tokio::sync::watch;

/// Default hub URL when neither `--hub-url` nor `GLEITZEIT_HUB_URL` is given.
pub const DEFAULT_HUB_URL: &str = "http://127.0.0.1:8000";

/// The default data directory: `$GLEITZEIT_DATA_DIR`, else `$XDG_DATA_HOME/gleitzeit`,
/// else `~/.local/share/gleitzeit`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GLEITZEIT_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("gleitzeit");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/gleitzeit"),
        None => std::env::temp_dir().join("gleitzeit"),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags every service accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// URL of the central hub; several hubs of one mesh comma-separated (a lost connection
    /// moves on to the next).
    #[arg(long, env = "GLEITZEIT_HUB_URL", default_value = DEFAULT_HUB_URL)]
    pub hub_url: String,
    /// Component id to register with (default: `<type>-<random>`).
    #[arg(long, env = "GLEITZEIT_COMPONENT_ID")]
    pub component_id: Option<String>,
    /// Log format.
    #[arg(long, env = "GLEITZEIT_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Longest drain a provider may be given (`--drain-grace`), in seconds.
pub const MAX_DRAIN_GRACE_SECS: f64 = 3600.0;

/// Flags of providers: how they stop.
#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    /// Seconds running tasks may take to finish once the provider is asked to stop (0 to
    /// 3600). Tasks still running then are given back to their engines (GZ1031) and run
    /// again elsewhere. Keep it below what stops the process for good (`gz stop` waits 5 s).
    #[arg(long = "drain-grace", env = "GLEITZEIT_DRAIN_GRACE", default_value = "3",
          value_parser = drain_seconds)]
    pub drain_grace: std::time::Duration,
}

/// Parses `--drain-grace`: seconds from 0 to [`MAX_DRAIN_GRACE_SECS`].
///
/// # Errors
///
/// A message naming the range, for clap to print.
pub fn drain_seconds(text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    if !(0.0..=MAX_DRAIN_GRACE_SECS).contains(&secs) {
        return Err(format!(
            "out of range: give 0 to {MAX_DRAIN_GRACE_SECS} seconds"
        ));
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// Sets up `tracing` for a binary. The level comes from `GLEITZEIT_LOG_LEVEL` (e.g. `debug`,
/// or a filter such as `info,central_hub=debug`), default `info`. Logs go to stderr.
///
/// Every binary calls this first, so it also sets the allocator's options
/// ([`configure_allocator`], for a process that relays messages: freed memory goes back to
/// the system after 100 ms, not 1 s to 10 s; [`serve`] then sets its service's own).
pub fn init_tracing(format: LogFormat) {
    configure_allocator(Footprint::Relay);
    let filter = std::env::var("GLEITZEIT_LOG_LEVEL").unwrap_or_else(|_| "info".to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: log files and container logs get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (e.g. several services in one test process) keeps the first subscriber.
    drop(result);
}

/// A cloneable shutdown signal: every holder can wait for it; [`ShutdownTrigger`] fires it.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Fires a [`Shutdown`].
#[derive(Debug, Clone)]
pub struct ShutdownTrigger {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (
            ShutdownTrigger {
                tx: std::sync::Arc::new(tx),
            },
            Shutdown { rx },
        )
    }

    /// A signal that fires when `fut` completes.
    pub fn from_future(fut: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        let (trigger, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            fut.await;
            trigger.fire();
        });
        shutdown
    }

    /// True once fired.
    pub fn is_fired(&self) -> bool {
        *self.rx.borrow()
    }

    /// Waits until fired (returns at once if it already was, or if the trigger is gone).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every trigger was dropped: treat that as shutdown too.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}

impl ShutdownTrigger {
    /// Fires the signal.
    pub fn fire(&self) {
        self.tx.send_replace(true);
    }
}

/// Completes on SIGINT or SIGTERM.
pub fn signal_shutdown() -> impl Future<Output = ()> + Send + 'static {
    // The handlers are installed now, not at the first poll: once a binary says it is ready
    // (`--ready-file`), a SIGTERM is a clean shutdown, never the default "terminated".
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut int, mut term) = handlers;
            let int = async {
                match int.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let term = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = int => tracing::info!("SIGINT received, shutting down"),
                _ = term => tracing::info!("SIGTERM received, shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("Ctrl-C received, shutting down");
        }
    }
}

/// A default component id: `<type>-<8 hex chars>`.
pub fn default_component_id(component_type: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{component_type}-{:08x}",
        nanos ^ std::process::id().rotate_left(16)
    )
}

/// Tells whoever started this binary where it listens: writes `addr` (e.g.
/// `127.0.0.1:41237`) to `path` through a file beside it and a rename, so a reader sees the
/// whole address or nothing. Called once the socket listens (`--ready-file`; the launcher
/// in `gleitzeit-launcher` waits for it instead of guessing a free port).
pub fn write_ready_file(path: &std::path::Path, addr: std::net::SocketAddr) -> std::io::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    std::fs::write(&partial, format!("{addr}\n"))?;
    std::fs::rename(&partial, path)
}

/// This machine's host name (best effort).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// The body of every service's `main`: sets up logging and the allocator for the service's
/// [`Footprint`], wires SIGINT/SIGTERM to a [`Shutdown`], runs the service, and turns its
/// result into the exit code.
pub async fn serve<F, Fut, E>(
    name: &str,
    footprint: Footprint,
    log_format: LogFormat,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    init_tracing(log_format);
    configure_allocator(footprint);
    match run(Shutdown::from_future(signal_shutdown())).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        drain: DrainArgs,
    }

    #[test]
    fn drain_grace_takes_seconds_in_range_and_refuses_the_rest() {
        assert_eq!(drain_seconds("0"), Ok(std::time::Duration::ZERO));
        assert_eq!(
            drain_seconds("2.5"),
            Ok(std::time::Duration::from_millis(2500))
        );
        for bad in ["-1", "3601", "1e300", "NaN", "inf", "soon", ""] {
            assert!(drain_seconds(bad).is_err(), "{bad}");
        }
        let flags = Flags::try_parse_from(["p", "--drain-grace", "10"]).expect("parses");
        assert_eq!(flags.drain.drain_grace, std::time::Duration::from_secs(10));
        assert!(Flags::try_parse_from(["p", "--drain-grace", "99999"]).is_err());
    }
}
