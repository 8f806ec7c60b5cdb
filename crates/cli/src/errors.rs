//! `gz errors list|search|show`: the error catalogue (`gleitzeit_protocol::errors`): every
//! `GZnnnn` code with its domain, severity, message, hint and whether retrying helps.
//! Works without a hub.

use gleitzeit_protocol::errors::{ErrorCode, GzError, Severity};
use serde_json::{json, Value};

use crate::CmdResult;

/// `gz errors` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ErrorsArgs {
    /// What to do (default: `list`).
    #[command(subcommand)]
    pub command: Option<ErrorsCommand>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `gz errors` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ErrorsCommand {
    /// Every code, or those of one domain or severity.
    List {
        /// infrastructure, execution, workflow, auth, storage, network, validation, system
        /// or cli.
        #[arg(long)]
        domain: Option<String>,
        /// critical, high, medium or low.
        #[arg(long)]
        severity: Option<String>,
    },
    /// Codes whose code, message, hint or domain contain TEXT (case-insensitive).
    Search {
        /// Words to look for; every one must match.
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// One code in full (`GZ2011`, `gz2011` or `2011`).
    Show {
        /// The code.
        code: String,
    },
}

fn entry(c: ErrorCode) -> Value {
    json!({
        "code": c.as_str(),
        "domain": c.domain(),
        "severity": c.severity().as_str(),
        "message": c.message(),
        "hint": c.hint(),
        "retryable": c.retryable(),
    })
}

fn usage(message: String, hint: &str) -> GzError {
    GzError::new(ErrorCode::Usage, message).with_hint(hint)
}

/// The codes a `list` selects.
fn listed(domain: Option<&str>, severity: Option<&str>) -> Result<Vec<ErrorCode>, GzError> {
    let domain = domain.map(str::to_ascii_lowercase);
    if let Some(d) = &domain {
        if !ErrorCode::DOMAINS.contains(&d.as_str()) {
            return Err(usage(
                format!("unknown domain {d:?}"),
                &format!("domains: {}", ErrorCode::DOMAINS.join(", ")),
            ));
        }
    }
    let severity = match severity {
        None => None,
        Some(s) => Some(
            Severity::ALL
                .into_iter()
                .find(|v| v.as_str().eq_ignore_ascii_case(s))
                .ok_or_else(|| {
                    usage(
                        format!("unknown severity {s:?}"),
                        "severities: critical, high, medium, low",
                    )
                })?,
        ),
    };
    Ok(ErrorCode::ALL
        .iter()
        .copied()
        .filter(|c| domain.as_deref().is_none_or(|d| c.domain() == d))
        .filter(|c| severity.is_none_or(|s| c.severity() == s))
        .collect())
}

/// The codes matching every word of `words`.
fn searched(words: &[String]) -> Vec<ErrorCode> {
    let words: Vec<String> = words
        .iter()
        .flat_map(|w| w.split_whitespace())
        .map(str::to_lowercase)
        .collect();
    ErrorCode::ALL
        .iter()
        .copied()
        .filter(|c| {
            let text = format!("{} {} {} {}", c.as_str(), c.message(), c.hint(), c.domain())
                .to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .collect()
}

/// The code a user typed.
fn lookup(code: &str) -> Result<ErrorCode, GzError> {
    let digits = code
        .trim()
        .trim_start_matches(['G', 'g'])
        .trim_start_matches(['Z', 'z']);
    ErrorCode::from_code(&format!("GZ{digits}")).ok_or_else(|| {
        usage(
            format!("no error code {code:?}"),
            "`gz errors list` shows every code; `gz errors search WORD` finds one",
        )
    })
}

fn print_table(codes: &[ErrorCode]) {
    for c in codes {
        println!(
            "{}  {:<14} {:<8}  {}\n        hint: {}",
            c.as_str(),
            c.domain(),
            c.severity().as_str(),
            c.message(),
            c.hint()
        );
    }
}

/// `gz errors …`.
pub fn run(args: ErrorsArgs) -> CmdResult {
    let codes = match &args.command {
        None => listed(None, None)?,
        Some(ErrorsCommand::List { domain, severity }) => {
            listed(domain.as_deref(), severity.as_deref())?
        }
        Some(ErrorsCommand::Search { text }) => searched(text),
        Some(ErrorsCommand::Show { code }) => {
            let c = lookup(code)?;
            if args.json {
                println!("{}", entry(c));
            } else {
                println!("{}: {}", c.as_str(), c.message());
                println!("  domain:    {}", c.domain());
                println!("  severity:  {}", c.severity().as_str());
                println!("  retryable: {}", if c.retryable() { "yes" } else { "no" });
                println!("  what to do: {}", c.hint());
            }
            return Ok(0);
        }
    };
    if args.json {
        println!(
            "{}",
            Value::Array(codes.iter().map(|c| entry(*c)).collect())
        );
    } else if codes.is_empty() {
        println!("no error code matches");
    } else {
        print_table(&codes);
    }
    // A search that finds nothing is not an error of the command, but scripts can tell.
    Ok(if codes.is_empty() { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_found_by_words_domain_and_severity() {
        let found = searched(&["redis".into()]);
        assert!(found.contains(&ErrorCode::RedisUnavailable));
        let found = searched(&["model not".into()]);
        assert_eq!(found, [ErrorCode::ModelNotFound]);
        let auth = listed(Some("AUTH"), None).expect("domain");
        assert!(auth.iter().all(|c| c.as_str().starts_with("GZ4")) && !auth.is_empty());
        let critical = listed(None, Some("critical")).expect("severity");
        assert!(critical.contains(&ErrorCode::StoreFailed));
        assert!(listed(Some("nowhere"), None).is_err());
        assert!(listed(None, Some("mild")).is_err());
        assert_eq!(lookup("gz2011").expect("code"), ErrorCode::ModelNotFound);
        assert_eq!(lookup("2011").expect("code"), ErrorCode::ModelNotFound);
        assert!(lookup("GZ0000").is_err());
    }
}
