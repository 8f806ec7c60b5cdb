//! `GZnnnn` error codes and the error value that travels on the wire.
//!
//! Codes are grouped by domain: 1xxx infrastructure, 2xxx execution, 3xxx workflow,
//! 4xxx auth, 5xxx storage, 6xxx network (HTTP tasks), 7xxx validation, 8xxx system,
//! 9xxx CLI. Each code has a default message, a hint a person can act on, and whether
//! retrying can help.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

macro_rules! error_codes {
    ($( $variant:ident = $code:literal, $retry:literal, $msg:literal, $hint:literal; )*) => {
        /// Every error code Gleitzeit uses.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $(
                #[doc = $msg]
                $variant,
            )*
        }

        impl ErrorCode {
            /// All codes, in catalog order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The `GZnnnn` string.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// Whether retrying the same operation may succeed.
            pub fn retryable(self) -> bool {
                match self { $(ErrorCode::$variant => $retry,)* }
            }

            /// The default user message.
            pub fn message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $msg,)* }
            }

            /// What a person can do about it.
            pub fn hint(self) -> &'static str {
                match self { $(ErrorCode::$variant => $hint,)* }
            }

            /// Looks a code up by its `GZnnnn` string.
            pub fn from_code(code: &str) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    RedisUnavailable = "GZ1001", true, "Redis connection failed", "Check that Redis is running and GLEITZEIT_REDIS_URL is right.";
    HubUnreachable = "GZ1010", true, "Cannot reach the Gleitzeit hub", "Start the suite with `gz start` (or `gz hub`), or set --hub-url / GLEITZEIT_HUB_URL to a running hub.";
    TlsConfig = "GZ1012", false, "TLS certificate, key or CA could not be loaded", "Check the PEM file named in the message: the hub's --tls-cert/--tls-key (GLEITZEIT_TLS_CERT, GLEITZEIT_TLS_KEY), a client's GLEITZEIT_TLS_CA; docs/security.md shows how to make them.";
    NoRoute = "GZ1020", true, "No component can take this message", "Start a component of the needed type (see `gz status`), or check the target name.";
    RequestTimeout = "GZ1030", true, "The request timed out waiting for a reply", "The component may be overloaded or gone; check `gz status` and retry.";
    Disconnected = "GZ1031", true, "The connection to the hub was lost", "The client reconnects by itself; check that the hub is running.";
    CircuitOpen = "GZ1033", true, "Circuit breaker open", "The endpoint failed repeatedly and is cooling down; it is probed again shortly.";
    TaskFailed = "GZ2001", true, "Task failed", "See the task's error details (`gz inspect task ID`).";
    TaskTimeout = "GZ2002", true, "Task timed out", "Raise the task's `timeout`, or make the work faster.";
    RetriesExhausted = "GZ2004", false, "Task failed after all retry attempts", "Inspect the last error; raise `retry.max_attempts` if the failure is transient.";
    Cancelled = "GZ2006", false, "Cancelled", "The workflow or task was cancelled on request.";
    OllamaUnreachable = "GZ2010", true, "LLM endpoint unreachable", "Check that Ollama is running at the configured URL (`gz providers`).";
    ModelNotFound = "GZ2011", false, "Model not found on any endpoint", "Pull the model first: `ollama pull <model>` (or set auto_pull: true).";
    NoEndpoint = "GZ2012", true, "No endpoint can serve this request", "Check endpoint health, models and tags with `gz providers`.";
    NoProvider = "GZ2015", true, "No provider serves this method", "Start a provider for the method (`gz status` lists what is registered).";
    PythonNotFound = "GZ2020", false, "Python script or function not found", "Check the `file` path; relative paths are resolved against the workflow's folder.";
    SecurityViolation = "GZ2023", false, "Security violation", "The task tried something the provider does not allow.";
    PythonSyntax = "GZ2024", false, "Python syntax error", "Fix the script at the reported line.";
    PythonException = "GZ2025", false, "Python script raised an exception", "Read the traceback in the task's error.";
    OutputTooLarge = "GZ2026", false, "Task output exceeded the size limit", "Return less data (write large results to a file and return its path); the output was truncated.";
    ResourceLimit = "GZ2027", false, "Task exceeded a resource limit", "The task hit its memory, CPU time, file size or process limit; raise the provider's limits or make the task smaller.";
    FileNotText = "GZ2028", false, "The file is not text", "The file is binary or not UTF-8: use a vision task for images, or convert it to text first.";
    FileTooLarge = "GZ2029", false, "The file is too large", "Split the file: text files of up to 4 MiB go into a prompt.";
    ValidationFailed = "GZ3001", false, "Workflow validation failed", "Fix the reported field; `gz validate FILE` lists every problem.";
    CircularDependency = "GZ3003", false, "Circular dependency", "Break the cycle shown in the message.";
    DependencyFailed = "GZ3004", false, "Skipped because a dependency failed", "Fix the failed dependency; this task did not run.";
    ParseError = "GZ3007", false, "Workflow could not be parsed", "Check the file's structure against the documented workflow format.";
    SubstitutionFailed = "GZ3013", false, "A ${...} reference could not be resolved", "Check the task id and the path into its result (`gz inspect task ID`).";
    WorkflowNotFound = "GZ3020", false, "Workflow not found", "List workflows with `gz list`.";
    TaskNotFound = "GZ3021", false, "Task not found", "Check the task id with `gz inspect workflow ID`.";
    BatchFolderNotFound = "GZ3022", false, "Batch folder not found", "Check the batch `directory` path.";
    WorkflowTimeout = "GZ3030", false, "Workflow timed out", "Raise the workflow's `timeout`.";
    IdempotencyConflict = "GZ3031", false, "The idempotency key was already used for a different submission", "A retried submit must send the same workflow with the same key; give a new workflow a new key (the CLI and the SDK make one per submit).";
    AuthInvalid = "GZ4001", false, "Authentication failed: missing or invalid API key", "Set GLEITZEIT_API_KEY (or run `gz auth login --api-key KEY --save`); an admin creates keys with `gz auth key create`.";
    AuthExpired = "GZ4002", false, "API key expired or revoked", "Ask an admin for a new key (`gz auth key create NAME --user U`).";
    PermissionDenied = "GZ4003", false, "Insufficient permissions", "Ask an admin for a role that allows this action.";
    StoreFailed = "GZ5001", true, "Storage operation failed", "Check the data directory (disk space, permissions) or the Redis server.";
    StoredRecordInvalid = "GZ5002", false, "A stored record could not be loaded", "The record was skipped and marked failed; inspect it with `gz inspect workflow ID`.";
    HttpUnreachable = "GZ6001", true, "HTTP server unreachable", "Check the task's `url` and that the server is up (connection refused, DNS or TLS failure); a `retry:` policy runs the task again.";
    HttpServerError = "GZ6002", true, "The HTTP server answered with an error (5xx, 429 or 408)", "The server failed or is busy; give the task a `retry:` policy to run it again, or look at the server.";
    HttpStatus = "GZ6003", false, "Unexpected HTTP status", "The message shows the status and the start of the body; check the task's url, method, headers and `expected_status`.";
    HttpBadResponse = "GZ6004", false, "The HTTP response is not what the task expects", "The task asked for `response_type: json` and the body is not JSON; use `response_type: text` (or `auto`).";
    InvalidField = "GZ7001", false, "Invalid field", "Check the field's name and type against the documentation.";
    SchemaViolation = "GZ7002", false, "Parameters violate the method's schema", "See protocols/*.yaml for the method's parameters.";
    UnknownMethod = "GZ7003", false, "Unknown method", "Use one of the methods listed by `gz status` or in protocols/*.yaml.";
    YamlSyntax = "GZ7010", false, "YAML syntax error", "Fix the YAML at the reported line and column.";
    OutOfRange = "GZ7011", false, "Number out of range", "Use a value within the documented range (docs/workflows.md lists each field's limits).";
    TooLarge = "GZ7012", false, "Request too large", "Split the work into smaller parts; docs/security.md lists the limits.";
    AttachmentTooLarge = "GZ7013", false, "A file the workflow names is too large to travel with it", "Files that tasks name travel with the workflow: at most 8 MiB each and 16 MiB per workflow (docs/workflows.md). Make the file smaller, split the workflow, or let the providers read it themselves (a path outside the workflow's folder, under their allowed roots).";
    AttachmentUnreadable = "GZ7014", false, "A file the workflow names cannot be read", "Paths are relative to the workflow file's folder: check that the file the message names exists there, is a regular file and is readable.";
    InvalidPayload = "GZ7020", false, "Malformed message payload", "Send an envelope as documented in docs/protocol.md.";
    UnknownEvent = "GZ7021", false, "Unknown event", "See docs/protocol.md for the events the hub accepts.";
    Internal = "GZ8001", true, "Internal error", "This is a bug; please report it with the logs.";
    ShuttingDown = "GZ8002", true, "Component is shutting down", "Retry once the suite is back up.";
    Usage = "GZ9001", false, "Invalid command-line usage", "See `gz --help`.";
    FileNotFound = "GZ9002", false, "File not found", "Check the path.";
}

/// How bad an error is, for people sorting through them (`gz errors list --severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The suite or a service cannot work until someone acts (store, hub, TLS, a bug).
    Critical,
    /// Work cannot proceed for many tasks or for this user (no provider, no endpoint,
    /// refused credentials, a security violation).
    High,
    /// One task or workflow failed (its code, its input, its limits).
    Medium,
    /// Expected or transient: cancellations, skips, lookups of unknown ids, reconnects,
    /// command-line mistakes.
    Low,
}

impl Severity {
    /// Every severity, worst first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    /// Its name: `critical`, `high`, `medium`, `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

impl ErrorCode {
    /// The part of the system the code belongs to, from its first digit: `infrastructure`
    /// (1xxx), `execution` (2xxx), `workflow` (3xxx), `auth` (4xxx), `storage` (5xxx),
    /// `network` (6xxx), `validation` (7xxx), `system` (8xxx), `cli` (9xxx).
    pub fn domain(self) -> &'static str {
        match self.as_str().as_bytes().get(2) {
            Some(b'1') => "infrastructure",
            Some(b'2') => "execution",
            Some(b'3') => "workflow",
            Some(b'4') => "auth",
            Some(b'5') => "storage",
            Some(b'6') => "network",
            Some(b'7') => "validation",
            Some(b'8') => "system",
            _ => "cli",
        }
    }

    /// Every domain, in code order.
    pub const DOMAINS: [&'static str; 9] = [
        "infrastructure",
        "execution",
        "workflow",
        "auth",
        "storage",
        "network",
        "validation",
        "system",
        "cli",
    ];

    /// How bad it is (see [`Severity`]).
    pub fn severity(self) -> Severity {
        use ErrorCode as E;
        match self {
            E::RedisUnavailable
            | E::HubUnreachable
            | E::TlsConfig
            | E::StoreFailed
            | E::Internal => Severity::Critical,
            E::NoRoute
            | E::RequestTimeout
            | E::CircuitOpen
            | E::OllamaUnreachable
            | E::NoEndpoint
            | E::NoProvider
            | E::SecurityViolation
            | E::AuthInvalid
            | E::AuthExpired
            | E::PermissionDenied
            | E::StoredRecordInvalid => Severity::High,
            E::Disconnected
            | E::Cancelled
            | E::DependencyFailed
            | E::WorkflowNotFound
            | E::TaskNotFound
            | E::ShuttingDown
            | E::Usage
            | E::FileNotFound => Severity::Low,
            _ => Severity::Medium,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it travels on the wire and is shown to people.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct GzError {
    /// `GZnnnn`.
    pub code: String,
    /// What happened, specifically.
    pub message: String,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Whether retrying may succeed.
    #[serde(default)]
    pub retryable: bool,
    /// Extra machine-readable context (e.g. a traceback, a line and column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl GzError {
    /// An error with the code's default hint and retryability.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        GzError {
            code: code.as_str().to_string(),
            message: message.into(),
            hint: Some(code.hint().to_string()),
            retryable: code.retryable(),
            details: None,
        }
    }

    /// Replaces the hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Attaches details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Overrides retryability.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// The catalog entry for this error's code, if it is a known code.
    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(&self.code)
    }

    /// True when this error has the given code.
    pub fn is(&self, code: ErrorCode) -> bool {
        self.code == code.as_str()
    }

    /// A one-line human rendering with the hint.
    pub fn render(&self) -> String {
        match &self.hint {
            Some(h) => format!("{}: {}\n  hint: {}", self.code, self.message, h),
            None => format!("{}: {}", self.code, self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(s.starts_with("GZ") && s.len() == 6, "{s}");
            assert!(seen.insert(s), "duplicate {s}");
            assert_eq!(ErrorCode::from_code(s), Some(*c));
            assert!(!c.hint().is_empty());
        }
    }

    #[test]
    fn every_code_has_a_domain_from_its_first_digit_and_a_severity() {
        assert_eq!(ErrorCode::RedisUnavailable.domain(), "infrastructure");
        assert_eq!(ErrorCode::ModelNotFound.domain(), "execution");
        assert_eq!(ErrorCode::Usage.domain(), "cli");
        assert_eq!(ErrorCode::HttpServerError.domain(), "network");
        for c in ErrorCode::ALL {
            assert!(ErrorCode::DOMAINS.contains(&c.domain()), "{c}");
        }
        assert_eq!(ErrorCode::StoreFailed.severity(), Severity::Critical);
        assert_eq!(ErrorCode::Cancelled.severity(), Severity::Low);
        assert_eq!(ErrorCode::PythonException.severity(), Severity::Medium);
        assert!(Severity::Critical < Severity::Low);
    }

    #[test]
    fn error_serializes_with_code_and_hint() {
        let e = GzError::new(ErrorCode::HubUnreachable, "connection refused");
        let v = serde_json::to_value(&e).expect("serializes");
        assert_eq!(v["code"], "GZ1010");
        assert_eq!(v["retryable"], true);
        assert!(v["hint"].as_str().is_some_and(|h| h.contains("gz start")));
    }
}
