//! What a job is, what it produces, and the request line that carries it to a worker.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::confine::PathPolicy;
use crate::error::PythonError;

/// One `python/execute` job: exactly one of `code` and `file` must be set.
#[derive(Debug, Clone, Default)]
pub struct PythonJob {
    /// Task id, used in logs only.
    pub id: String,
    /// Inline Python source.
    pub code: Option<String>,
    /// Path of a script; relative paths are resolved against `base_dir`.
    pub file: Option<String>,
    /// Folder that relative `file` and `cwd` paths are relative to (e.g. the workflow's).
    pub base_dir: Option<PathBuf>,
    /// Visible to the code as the variable `context`; `null` becomes `{}`.
    pub context: Value,
    /// Longest time the code may run (queueing time excluded); `None` means the pool's
    /// default timeout.
    pub timeout: Option<Duration>,
    /// Working directory for this job.
    pub cwd: Option<PathBuf>,
    /// A folder of the job's own (the provider makes one per task): a root for its `file`
    /// and `cwd`, the base of a relative `cwd`, and its working directory when it names none.
    /// Its path must be canonical (as `TaskFolder::create` makes it): it is used as given.
    pub work_dir: Option<PathBuf>,
}

impl PythonJob {
    /// A job running inline source.
    pub fn inline(code: impl Into<String>) -> Self {
        Self {
            code: Some(code.into()),
            ..Self::default()
        }
    }

    /// A job running the script at `file`.
    pub fn script(file: impl Into<String>) -> Self {
        Self {
            file: Some(file.into()),
            ..Self::default()
        }
    }
}

/// What a successful job produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PythonOutcome {
    /// The code's `result` variable. JSON types are kept (tuples become arrays); sets and
    /// frozensets become arrays, objects with a `tolist()` method (numpy) become its value,
    /// non-finite floats and every other value become their `repr()` string, and non-string
    /// dict keys become their `repr()` (`None`/`True` keys become `"null"`/`"true"`).
    /// Integers beyond 64 bits arrive as floats.
    pub result: Value,
    /// Everything the code printed to `sys.stdout`.
    pub output: String,
    /// Seconds the code itself ran, measured in the worker.
    pub execution_time: f64,
}

impl PythonOutcome {
    /// The `python/execute` result: `{result, output, success: true, execution_time}`.
    pub fn to_json(&self) -> Value {
        json!({
            "result": self.result,
            "output": self.output,
            "success": true,
            "execution_time": self.execution_time,
        })
    }
}

/// Wire format of a request to `worker.py`.
#[derive(Serialize)]
struct Request<'a> {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a Path>,
    context: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    cwd: Option<&'a Path>,
    /// CPU seconds the job may use (its soft `RLIMIT_CPU`, on top of what the worker used).
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<u64>,
}

/// Where jobs may go and where they start.
pub(crate) struct Placement<'a> {
    pub policy: &'a PathPolicy,
    /// The pool's default working directory, else its own.
    pub default_cwd: &'a Path,
}

/// Checks the job, resolves its paths under the allowed roots and renders its request line
/// (newline included).
///
/// The working directory is the job's `cwd` (relative to its `work_dir`, else to
/// `base_dir`), else its `work_dir`, else `base_dir` when it lies under the roots, else the
/// pool's default. A relative `file` is relative to `base_dir`, else to the working
/// directory. The job's `work_dir` is a root for both.
pub(crate) fn encode_request(
    seq: u64,
    job: &PythonJob,
    timeout: Option<Duration>,
    place: &Placement<'_>,
) -> Result<Vec<u8>, PythonError> {
    let code = match (job.code.as_deref(), job.file.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(PythonError::InvalidJob(
                "give either `code` or `file`, not both".to_owned(),
            ))
        }
        (None, None) => {
            return Err(PythonError::InvalidJob(
                "give `code` (inline source) or `file` (a script path)".to_owned(),
            ))
        }
        (code, _) => code,
    };
    let workflow_dir = job.base_dir.as_deref();
    let own = job.work_dir.as_deref();
    let resolve = |what: &str, path: &Path, base: &Path| {
        place
            .policy
            .resolve_for_job(what, path, base, workflow_dir, own)
    };
    let base = own.or(workflow_dir).unwrap_or(place.default_cwd);
    let cwd = match (&job.cwd, own, workflow_dir) {
        (Some(cwd), _, _) => Some(resolve("working directory", cwd, base)?),
        (None, Some(own), _) => Some(resolve("working directory", Path::new("."), own)?),
        (None, None, Some(dir)) => resolve("working directory", Path::new("."), dir).ok(),
        (None, None, None) => None,
    };
    let file = match &job.file {
        Some(file) => {
            let base = workflow_dir.or(cwd.as_deref()).unwrap_or(place.default_cwd);
            Some(resolve("python script", Path::new(file), base)?)
        }
        None => None,
    };
    let request = Request {
        seq,
        code,
        file: file.as_deref(),
        context: &job.context,
        cwd: cwd.as_deref(),
        cpu: timeout.map(|t| t.as_secs().saturating_add(1)),
    };
    let mut line = serde_json::to_vec(&request)
        .map_err(|e| PythonError::InvalidJob(format!("cannot encode the job: {e}")))?;
    line.push(b'\n');
    Ok(line)
}
