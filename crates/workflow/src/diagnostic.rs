//! Diagnostics: what is wrong with a workflow, where, and how to fix it.
//!
//! Parsing and validation never stop at the first mistake; they collect a [`Diagnostic`] for
//! every one they can find, each with the line and column of the YAML node it concerns when
//! the workflow came from YAML.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::yaml::Pos;

/// Whether a diagnostic stops the workflow from being accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    /// A `GZnnnn` code from [`crate::codes`].
    pub code: String,
    pub message: String,
    /// How to fix it, when there is something useful to say.
    pub hint: Option<String>,
    /// 1-based line of the YAML node concerned; `None` for specs that arrived as JSON.
    pub line: Option<usize>,
    /// 1-based column of the YAML node concerned.
    pub column: Option<usize>,
    pub severity: Severity,
}

impl Diagnostic {
    /// An error with the given code and message, not yet placed.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            code: code.to_string(),
            message: message.into(),
            hint: None,
            line: None,
            column: None,
            severity: Severity::Error,
        }
    }

    /// A warning with the given code and message, not yet placed.
    pub fn warning(code: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, message)
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint if there is one.
    #[must_use]
    pub fn with_optional_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Places the diagnostic at a 1-based line and column.
    #[must_use]
    pub fn at_line_column(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    #[must_use]
    pub(crate) fn at(self, pos: Option<Pos>) -> Self {
        match pos {
            Some(pos) => self.at_line_column(pos.line, pos.column),
            None => self,
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `GZ3003 at 12:5: circular dependency: a -> b -> a (hint: ...)`; warnings read
    /// `GZ7001 at 3:15: warning: ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)?;
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, " at {line}:{column}")?,
            (Some(line), None) => write!(f, " at line {line}")?,
            _ => {}
        }
        f.write_str(": ")?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Sorts diagnostics by position (unplaced ones last), keeping discovery order for ties.
pub(crate) fn sort_by_position(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| (d.line.is_none(), d.line, d.column));
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = word.chars().count() / 3;
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting a swap of neighbours as one edit (optimal string alignment),
/// case-insensitive.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, cell) in d.iter_mut().step_by(width).enumerate() {
        *cell = i;
    }
    for (j, cell) in d.iter_mut().take(width).enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// Lists names for a hint, cut short when there are many (workflows can have 100,000
/// tasks); only the names shown are visited.
pub(crate) fn list_for_hint<'a, I>(names: I) -> String
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: ExactSizeIterator,
{
    const SHOWN: usize = 12;
    let names = names.into_iter();
    let more = names.len().saturating_sub(SHOWN);
    let mut text = names.take(SHOWN).collect::<Vec<_>>().join(", ");
    if more > 0 {
        text.push_str(&format!(", … ({more} more)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_code_position_and_hint() {
        let d = Diagnostic::error("GZ3003", "circular dependency: a -> b -> a")
            .with_hint("remove one of the dependencies")
            .at_line_column(12, 5);
        assert_eq!(
            d.to_string(),
            "GZ3003 at 12:5: circular dependency: a -> b -> a (hint: remove one of the dependencies)"
        );
        let w = Diagnostic::warning("GZ7001", "priority 7 is above 4");
        assert_eq!(w.to_string(), "GZ7001: warning: priority 7 is above 4");
    }

    #[test]
    fn suggestions_pick_close_words_only() {
        let keys = ["parameters", "params", "dependencies", "method"];
        assert_eq!(did_you_mean("paramters", keys), Some("parameters"));
        assert_eq!(did_you_mean("dependecies", keys), Some("dependencies"));
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(did_you_mean("modle", ["model", "messages"]), Some("model"));
    }

    #[test]
    fn long_lists_are_cut_short() {
        let names: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let text = list_for_hint(names.iter().map(String::as_str));
        assert!(text.ends_with("… (8 more)"), "{text}");
    }
}
