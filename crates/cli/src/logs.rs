//! `gz logs [--service S] [--level L] [--search TEXT] [--follow] [--json]`: the services'
//! logs of a local suite, read from the data dir (`<data dir>/logs/<service>.log`, where
//! `gz run` and `gz start` send each child's output). Logs do not travel through the hub:
//! services on other machines keep theirs where they run (journal, container logs), so this
//! command reads the logs of the suite on this machine.
//!
//! Both log formats are read: text lines (`2026-…Z  INFO target: message k=v`, colour codes
//! dropped) and JSON lines (`GLEITZEIT_LOG_FORMAT=json`).

use std::collections::BTreeMap;
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use serde_json::{json, Value};

use crate::CmdResult;

/// `gz logs` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// Only this service (file name without `.log`, e.g. `queue-manager`); repeatable.
    #[arg(long, value_delimiter = ',')]
    pub service: Vec<String>,
    /// Only lines at this level or worse: error, warn, info, debug, trace.
    #[arg(long)]
    pub level: Option<String>,
    /// Only lines containing this text (case-insensitive).
    #[arg(long)]
    pub search: Option<String>,
    /// The last N lines of each service (0: all).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are written (until Ctrl-C).
    #[arg(long, short)]
    pub follow: bool,
    /// One JSON object per line: `{"service", "ts", "level", "target", "message"}`.
    #[arg(long)]
    pub json: bool,
    /// The suite's data dir (default: the user's data dir).
    #[arg(long, env = "GLEITZEIT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    ts: String,
    level: String,
    target: String,
    message: String,
}

/// Severity rank: lower is worse.
fn rank(level: &str) -> u8 {
    match level.to_ascii_uppercase().as_str() {
        "ERROR" => 0,
        "WARN" | "WARNING" => 1,
        "INFO" => 2,
        "DEBUG" => 3,
        _ => 4,
    }
}

/// The text without ANSI colour sequences.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads one line of either format; anything else (a panic message, a traceback) is kept
/// whole as an unlevelled message.
fn parse(raw: &str) -> Line {
    if let Ok(v) = serde_json::from_str::<Value>(raw) {
        if v.is_object() {
            let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let mut extra: Vec<String> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "timestamp" | "level" | "target" | "message")
                })
                .map(|(k, val)| {
                    format!(
                        "{k}={}",
                        val.as_str().map_or_else(|| val.to_string(), str::to_string)
                    )
                })
                .collect();
            extra.sort();
            let mut message = text("message");
            if !extra.is_empty() {
                message = format!("{message} {}", extra.join(" "));
            }
            return Line {
                ts: text("timestamp"),
                level: text("level"),
                target: text("target"),
                message,
            };
        }
    }
    let text = plain(raw);
    let mut parts = text.split_whitespace();
    let ts = parts.next().unwrap_or_default();
    let level = parts.next().unwrap_or_default();
    let levelled = matches!(level, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE");
    if levelled && ts.len() >= 20 && ts.ends_with('Z') {
        let after_level = text
            .trim_start()
            .split_once(level)
            .map(|(_, rest)| rest.trim_start())
            .unwrap_or_default();
        let (target, message) = match after_level.split_once(": ") {
            Some((t, m)) if !t.contains(' ') => (t.to_string(), m.to_string()),
            _ => (String::new(), after_level.to_string()),
        };
        return Line {
            ts: ts.to_string(),
            level: level.to_string(),
            target,
            message,
        };
    }
    Line {
        ts: String::new(),
        level: String::new(),
        target: String::new(),
        message: text,
    }
}

/// What to keep.
struct Filter {
    worst: u8,
    search: Option<String>,
}

impl Filter {
    fn keeps(&self, line: &Line) -> bool {
        let level_ok = line.level.is_empty() || rank(&line.level) <= self.worst;
        let text_ok = self.search.as_ref().is_none_or(|s| {
            format!("{} {}", line.target, line.message)
                .to_lowercase()
                .contains(s)
        });
        level_ok && text_ok
    }
}

fn print(service: &str, line: &Line, json_out: bool) {
    if json_out {
        println!(
            "{}",
            json!({ "service": service, "ts": line.ts, "level": line.level, "target": line.target, "message": line.message })
        );
    } else if line.level.is_empty() {
        println!("{service:<20} {}", line.message);
    } else {
        println!(
            "{service:<20} {} {:<5} {}",
            line.ts, line.level, line.message
        );
    }
}

/// The log files to read: every `*.log` of the folder, or the named services'.
fn files(dir: &Path, services: &[String]) -> Result<BTreeMap<String, PathBuf>, GzError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        GzError::new(
            ErrorCode::FileNotFound,
            format!("no logs in {}: {e}", dir.display()),
        )
        .with_hint("gz logs reads the logs of a suite started on this machine by `gz start` or `gz run`; pass --data-dir if it used another data dir")
    })?;
    let mut found = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
        else {
            continue;
        };
        if services.is_empty() || services.iter().any(|s| s == name) {
            found.insert(name.to_string(), path.clone());
        }
    }
    if let Some(missing) = services.iter().find(|s| !found.contains_key(*s)) {
        return Err(GzError::new(
            ErrorCode::FileNotFound,
            format!("no log of {missing:?} in {}", dir.display()),
        )
        .with_hint(format!(
            "logs there: {}",
            files(dir, &[])
                .map(|f| f.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        )));
    }
    Ok(found)
}

/// `gz logs`.
pub async fn run(args: LogsArgs) -> CmdResult {
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::suite::default_data_dir)
        .join("logs");
    let worst = match &args.level {
        None => 4,
        Some(l)
            if ["error", "warn", "info", "debug", "trace"]
                .contains(&l.to_ascii_lowercase().as_str()) =>
        {
            rank(l)
        }
        Some(l) => {
            return Err(
                GzError::new(ErrorCode::Usage, format!("unknown level {l:?}"))
                    .with_hint("levels: error, warn, info, debug, trace")
                    .into(),
            )
        }
    };
    let filter = Filter {
        worst,
        search: args.search.as_ref().map(|s| s.to_lowercase()),
    };
    let files = files(&dir, &args.service)?;
    let mut offsets = BTreeMap::new();
    for (service, path) in &files {
        let text = std::fs::read(path).unwrap_or_default();
        offsets.insert(service.clone(), text.len() as u64);
        let text = String::from_utf8_lossy(&text);
        let kept: Vec<Line> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse)
            .filter(|l| filter.keeps(l))
            .collect();
        let from = if args.lines == 0 {
            0
        } else {
            kept.len().saturating_sub(args.lines)
        };
        for line in &kept[from..] {
            print(service, line, args.json);
        }
    }
    if !args.follow {
        return Ok(0);
    }
    let interrupt = gleitzeit_runtime::signal_shutdown();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = &mut interrupt => return Ok(0),
        }
        for (service, path) in &files {
            let offset = offsets.entry(service.clone()).or_insert(0);
            let Ok(mut file) = std::fs::File::open(path) else {
                continue;
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len < *offset {
                *offset = 0; // the service was restarted and its log begun anew
            }
            if file.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut reader = std::io::BufReader::new(file);
            let mut buf = String::new();
            while reader.read_line(&mut buf).unwrap_or(0) > 0 {
                if !buf.ends_with('\n') {
                    break; // a line still being written: read it whole next time
                }
                *offset += buf.len() as u64;
                let line = parse(buf.trim_end());
                if !buf.trim().is_empty() && filter.keeps(&line) {
                    print(service, &line, args.json);
                }
                buf.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_lines_are_read_with_their_level() {
        let text = "\u{1b}[2m2026-12-03T09:46:33.807978Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m \u{1b}[2mqueue_manager\u{1b}[0m\u{1b}[2m:\u{1b}[0m store opened kind=sqlite";
        let l = parse(text);
        assert_eq!(l.level, "INFO");
        assert_eq!(l.target, "queue_manager");
        assert_eq!(l.message, "store opened kind=sqlite");
        assert_eq!(l.ts, "2026-12-03T09:46:33.807978Z");
        let l = parse(
            r#"{"timestamp":"2026-12-03T09:46:33Z","level":"WARN","target":"hub","message":"slow","ms":12}"#,
        );
        assert_eq!(
            (l.level.as_str(), l.message.as_str()),
            ("WARN", "slow ms=12")
        );
        let l = parse("Traceback (most recent call last):");
        assert!(l.level.is_empty());
        let f = Filter {
            worst: rank("warn"),
            search: Some("slow".into()),
        };
        assert!(f.keeps(&parse(r#"{"level":"WARN","message":"slow"}"#)));
        assert!(!f.keeps(&parse(r#"{"level":"INFO","message":"slow"}"#)));
        assert!(!f.keeps(&parse(r#"{"level":"ERROR","message":"fast"}"#)));
    }
}
