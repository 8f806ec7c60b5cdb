//! The built-in functions (`python/function`, service `builtin`): the catalogue of
//! `protocols/functions.yaml` (via `gleitzeit_workflow::functions`), declared at
//! registration, and `builtins.py`, their implementation, run in the warm workers like any
//! inline code: the source is the same for every call, so each worker compiles it once.
//!
//! Every call is checked against the function's schema before a worker sees it (GZ7002 with
//! the path); an unknown function, or a call for another service, is GZ2020.

use std::sync::OnceLock;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::routing::{self, BUILTIN_SERVICE};
use gleitzeit_workflow::functions::builtin_functions;
use serde_json::{json, Map, Value};

use crate::job::PythonJob;

/// The implementations.
const BUILTINS: &str = include_str!("builtins.py");

/// What a worker runs for every call: the implementations, then the dispatcher.
fn source() -> &'static str {
    static SOURCE: OnceLock<String> = OnceLock::new();
    SOURCE.get_or_init(|| format!("{BUILTINS}\nresult = _gz_call(context)\n"))
}

/// The routing keys of every built-in function (`docs/protocol.md` §5.7).
pub fn capabilities() -> Vec<String> {
    routing::function_capabilities(BUILTIN_SERVICE, builtin_functions().names())
}

/// The declarations published in the registration metadata.
pub fn declarations() -> Value {
    Value::Array(
        builtin_functions()
            .iter()
            .map(|f| f.declaration(BUILTIN_SERVICE))
            .collect(),
    )
}

/// The job calling the function a `python/function` task names.
pub fn job(params: &Value) -> Result<PythonJob, GzError> {
    let name = params
        .get("function_name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            GzError::new(
                ErrorCode::SchemaViolation,
                "function_name: a python/function task names its function",
            )
        })?;
    if let Some(service) = params.get("service_name").and_then(Value::as_str) {
        if service != BUILTIN_SERVICE {
            return Err(not_found(format!(
                "the python-provider runs the built-in functions (service {BUILTIN_SERVICE:?}), not those of {service:?}"
            )));
        }
    }
    let function = builtin_functions()
        .get(name)
        .ok_or_else(|| not_found(format!("there is no built-in function {name:?}")))?;
    let args = match params.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(other) => return Err(violation("args", &format!("{other} is not an array"))),
    };
    let kwargs = match params.get("kwargs") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(k)) => k.clone(),
        Some(other) => return Err(violation("kwargs", &format!("{other} is not an object"))),
    };
    if let Some(issue) = function.check_call(&args, &kwargs).into_iter().next() {
        let path = issue.pointer.trim_start_matches('/').replace('/', ".");
        let mut err = violation(&path, &issue.message);
        if let Some(hint) = issue.hint {
            err = err.with_hint(hint);
        }
        return Err(err.with_details(json!({ "signature": function.signature() })));
    }
    Ok(PythonJob {
        code: Some(source().to_string()),
        context: json!({ "function_name": name, "args": args, "kwargs": kwargs }),
        ..PythonJob::default()
    })
}

fn not_found(message: String) -> GzError {
    GzError::new(ErrorCode::PythonNotFound, message)
        .with_hint("`gz functions list` shows every function the connected providers declare")
}

fn violation(path: &str, message: &str) -> GzError {
    GzError::new(ErrorCode::SchemaViolation, format!("{path}: {message}")).with_retryable(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_checked_before_it_becomes_a_job() {
        let made =
            super::job(&json!({"function_name": "fibonacci", "kwargs": {"n": 5}})).expect("ok");
        assert_eq!(made.context["kwargs"]["n"], 5);
        assert!(made
            .code
            .as_deref()
            .is_some_and(|c| c.ends_with("result = _gz_call(context)\n")));
        let e = super::job(&json!({"function_name": "fibonacci", "kwargs": {"n": "x"}}))
            .expect_err("bad");
        assert_eq!(e.code, "GZ7002");
        assert!(e.message.starts_with("kwargs.n: "), "{e}");
        let e = super::job(&json!({"function_name": "no_such"})).expect_err("unknown");
        assert_eq!(e.code, "GZ2020");
        let e = super::job(&json!({"function_name": "fibonacci", "service_name": "other"}))
            .expect_err("other service");
        assert_eq!(e.code, "GZ2020");
        assert!(capabilities().contains(&"python/function#fibonacci@builtin".to_string()));
        assert!(declarations().as_array().is_some_and(|d| !d.is_empty()));
    }
}
