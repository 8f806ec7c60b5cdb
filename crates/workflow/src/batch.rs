//! Batch workflows: one task per file of a folder, made from a template task.
//!
//! A workflow file with `batch: {directory, pattern | extensions, recursive, max_files}` and
//! a `template:` task (or `gz run --batch-folder DIR …`) is parsed with the template as its
//! first task and the batch settings under `metadata.batch`; [`list_files`] then finds the
//! files (where the workflow file is, so this needs the disk and is not part of parsing) and
//! [`expand`] replaces the template with one task per file. Each task gets its file's path
//! where its method reads a file: `file_path` (`llm/chat`, `llm/generate`, others),
//! `image_path` (`llm/vision`), `context.file_path` (`python/execute`),
//! `kwargs.file_path` (`python/function`). The provider reads the file, so one that cannot
//! be read, is not text or is too big fails its own task with a coded error and the others
//! go on. Later tasks that depend on the template's id depend on every file's task.
//!
//! A later task with `tolerate_failures: true` runs even when some files failed, and
//! `${<template>.results}` in its parameters is every file's outcome in file order,
//! `[{file, task_id, status, result | error}]` (the dependency-resolver builds it from
//! [`members`]). `fail_fast: true` in the `batch:` block makes the first file that fails
//! for good stop the workflow instead (the queue-manager cancels the rest).

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::spec::{TaskSpec, WorkflowSpec};

/// Most files one batch may have (each is a task; see `crate::limits` for the workflow's).
pub const MAX_BATCH_FILES: u64 = 100_000;

/// The batch settings of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The folder, relative to the workflow file's.
    pub directory: String,
    /// A file-name pattern with `*` and `?` (e.g. `*.md`).
    pub pattern: Option<String>,
    /// File-name endings (e.g. `.txt`, `.md`); any of them.
    pub extensions: Vec<String>,
    /// Whether sub-folders are searched too.
    pub recursive: bool,
    /// At most this many files (more is an error, not a silent cut).
    pub max_files: u64,
    /// The first file that fails for good stops the workflow (default: the others go on).
    pub fail_fast: bool,
}

/// Why a batch could not be listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The folder is missing or unreadable (GZ3022).
    #[error("batch folder {0}: {1}")]
    Folder(String, String),
    /// More files than `max_files` (GZ7012).
    #[error("batch folder {folder} has {found} matching files, more than max_files {max}")]
    TooMany {
        /// The folder.
        folder: String,
        /// Files found (at least).
        found: u64,
        /// The limit.
        max: u64,
    },
    /// Nothing matched (GZ3022).
    #[error("no file in {0} matches the batch's pattern")]
    Empty(String),
}

impl Batch {
    /// The settings of a `batch:` block: `directory` (required), `pattern`, `extensions` (a
    /// list, or one comma-separated string), `recursive`, `max_files` (1 to
    /// [`MAX_BATCH_FILES`]). The error names the offending key.
    pub fn from_json(v: &Value) -> Result<Batch, String> {
        let map = v
            .as_object()
            .ok_or("`batch` must be a mapping with `directory`")?;
        for key in map.keys() {
            if ![
                "directory",
                "pattern",
                "extensions",
                "recursive",
                "max_files",
                "fail_fast",
            ]
            .contains(&key.as_str())
            {
                return Err(format!("unknown key `{key}` in `batch` (directory, pattern, extensions, recursive, max_files, fail_fast)"));
            }
        }
        let directory = match map.get("directory") {
            Some(Value::String(d)) if !d.is_empty() => d.clone(),
            _ => return Err("`batch` needs `directory`: the folder of the files".into()),
        };
        let pattern = match map.get("pattern") {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) => Some(p.clone()),
            Some(_) => return Err("`batch.pattern` must be a text such as \"*.md\"".into()),
        };
        let extensions = match map.get("extensions") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => s
                .split(',')
                .map(|e| e.trim().to_string())
                .filter(|e| !e.is_empty())
                .collect(),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(_) => return Err("`batch.extensions` must be a list such as [.txt, .md]".into()),
        };
        let recursive = match map.get("recursive") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`batch.recursive` must be true or false".into()),
        };
        let fail_fast = match map.get("fail_fast") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err("`batch.fail_fast` must be true or false".into()),
        };
        let max_files = match map.get("max_files") {
            None | Some(Value::Null) => MAX_BATCH_FILES,
            Some(n) => match n.as_u64() {
                Some(n) if (1..=MAX_BATCH_FILES).contains(&n) => n,
                _ => {
                    return Err(format!(
                        "`batch.max_files` must be 1 to {MAX_BATCH_FILES}, not {n}"
                    ))
                }
            },
        };
        Ok(Batch {
            directory,
            pattern,
            extensions,
            recursive,
            max_files,
            fail_fast,
        })
    }

    /// The settings as stored under `metadata.batch`.
    pub fn to_json(&self, template: &str) -> Value {
        json!({
            "directory": self.directory, "pattern": self.pattern, "extensions": self.extensions,
            "recursive": self.recursive, "max_files": self.max_files, "template": template,
            "fail_fast": self.fail_fast,
        })
    }

    /// The settings of a spec, if it is a batch (`metadata.batch`).
    pub fn of(spec: &WorkflowSpec) -> Option<(Batch, String)> {
        let b = spec.metadata.get("batch")?;
        let directory = b.get("directory")?.as_str()?.to_string();
        let template = b.get("template")?.as_str()?.to_string();
        Some((
            Batch {
                directory,
                pattern: b.get("pattern").and_then(Value::as_str).map(str::to_string),
                extensions: b
                    .get("extensions")
                    .and_then(Value::as_array)
                    .map(|e| {
                        e.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
                recursive: b.get("recursive").and_then(Value::as_bool).unwrap_or(false),
                max_files: b
                    .get("max_files")
                    .and_then(Value::as_u64)
                    .unwrap_or(MAX_BATCH_FILES),
                fail_fast: b.get("fail_fast").and_then(Value::as_bool).unwrap_or(false),
            },
            template,
        ))
    }

    fn matches(&self, name: &str) -> bool {
        let by_pattern = self.pattern.as_deref().is_none_or(|p| wildcard(p, name));
        let by_extension = self.extensions.is_empty()
            || self.extensions.iter().any(|e| {
                let e = if e.starts_with('.') {
                    e.clone()
                } else {
                    format!(".{e}")
                };
                name.to_lowercase().ends_with(&e.to_lowercase())
            });
        by_pattern && by_extension
    }
}

/// `*` (any run) and `?` (one character) against a whole file name.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The matching files of the batch's folder (relative to `base`), sorted by path; hidden
/// files and folders (`.name`) are left out.
pub fn list_files(batch: &Batch, base: &Path) -> Result<Vec<PathBuf>, BatchError> {
    let root = base.join(&batch.directory);
    let shown = root.display().to_string();
    let mut found = Vec::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        let entries = std::fs::read_dir(&folder)
            .map_err(|e| BatchError::Folder(folder.display().to_string(), e.to_string()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() || (kind.is_symlink() && path.is_dir()) {
                if batch.recursive {
                    folders.push(path);
                }
            } else if batch.matches(&name) {
                found.push(path);
                if found.len() as u64 > batch.max_files {
                    return Err(BatchError::TooMany {
                        folder: shown,
                        found: found.len() as u64,
                        max: batch.max_files,
                    });
                }
            }
        }
    }
    if found.is_empty() {
        return Err(BatchError::Empty(shown));
    }
    found.sort();
    Ok(found)
}

/// Where a task of `method` reads its batch file: an optional enclosing object, then a key.
fn file_slot(method: &str) -> (Option<&'static str>, &'static str) {
    match method {
        "llm/vision" => (None, "image_path"),
        "python/execute" => (Some("context"), "file_path"),
        "python/function" => (Some("kwargs"), "file_path"),
        _ => (None, "file_path"),
    }
}

/// The batch file of a task made by [`expand`], where its method reads it.
pub fn input_path<'a>(method: &str, params: &'a Value) -> Option<&'a str> {
    let (outer, key) = file_slot(method);
    let holder = match outer {
        Some(o) => params.get(o)?,
        None => params,
    };
    holder.get(key).and_then(Value::as_str)
}

/// Puts `path` where a task of `method` reads its file.
fn with_file(mut params: Value, method: &str, path: &str) -> Value {
    if !params.is_object() {
        params = Value::Object(Map::new());
    }
    let (outer, key) = file_slot(method);
    let target = match outer {
        Some(o) => {
            let inner = params
                .as_object_mut()
                .map(|m| m.entry(o).or_insert_with(|| json!({})));
            match inner {
                Some(v) if v.is_object() => v,
                Some(v) => {
                    *v = json!({});
                    v
                }
                None => return params,
            }
        }
        None => &mut params,
    };
    if let Some(m) = target.as_object_mut() {
        m.insert(key.to_string(), json!(path));
    }
    params
}

/// Replaces the template task (id `template`) by one task per file: ids
/// `<template>-00001`…, names the files' paths relative to the batch folder `root`; tasks
/// depending on the template depend on all of them. Returns the positions of the tasks made
/// (their file is at [`input_path`]).
pub fn expand(
    spec: &mut WorkflowSpec,
    template: &str,
    files: &[PathBuf],
    root: &Path,
) -> std::ops::Range<usize> {
    let Some(at) = spec.tasks.iter().position(|t| t.id == template) else {
        return 0..0;
    };
    let t: TaskSpec = spec.tasks.remove(at);
    let mut ids = Vec::with_capacity(files.len());
    let made: Vec<TaskSpec> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let id = member_id(template, i + 1, files.len());
            ids.push(id.clone());
            let shown = file
                .strip_prefix(root)
                .unwrap_or(file)
                .display()
                .to_string();
            TaskSpec {
                id,
                name: shown,
                parameters: with_file(t.parameters.clone(), &t.method, &file.display().to_string()),
                ..t.clone()
            }
        })
        .collect();
    for task in &mut spec.tasks {
        if task.dependencies.iter().any(|d| d == template) {
            task.dependencies.retain(|d| d != template);
            task.dependencies.extend(ids.iter().cloned());
        }
    }
    let made_at = at..at + made.len();
    spec.tasks.splice(at..at, made);
    if let Some(b) = spec
        .metadata
        .get_mut("batch")
        .and_then(Value::as_object_mut)
    {
        b.insert("files".into(), json!(files.len()));
    }
    made_at
}

/// The id of the `n`-th (1-based) of a batch's `count` tasks: `<template>-00001`….
pub fn member_id(template: &str, n: usize, count: usize) -> String {
    let width = count.to_string().len().max(5);
    format!("{template}-{n:0width$}")
}

/// The batch of an expanded spec: its template's id, its tasks' positions in file order
/// and whether it fails fast. `None` for a spec without a batch or not yet expanded (a
/// member missing from the spec also gives `None`: nothing is guessed).
pub fn members(spec: &WorkflowSpec) -> Option<(String, Vec<usize>, bool)> {
    let index: std::collections::HashMap<&str, usize> = spec
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    members_by(&spec.metadata, |id| index.get(id).copied())
}

/// [`members`] of a spec whose `metadata` is given, its tasks found by id with `position`.
pub fn members_by(
    metadata: &Value,
    position: impl Fn(&str) -> Option<usize>,
) -> Option<(String, Vec<usize>, bool)> {
    let b = metadata.get("batch")?;
    let template = b.get("template")?.as_str()?;
    let count = usize::try_from(b.get("files")?.as_u64()?).ok()?;
    let positions = (1..=count)
        .map(|n| position(member_id(template, n, count).as_str()))
        .collect::<Option<Vec<usize>>>()?;
    let fail_fast = b.get("fail_fast").and_then(Value::as_bool).unwrap_or(false);
    Some((template.to_string(), positions, fail_fast))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_whole_names() {
        assert!(wildcard("*.md", "a.md"));
        assert!(!wildcard("*.md", "a.md.bak"));
        assert!(wildcard("doc-??.txt", "doc-01.txt"));
        assert!(wildcard("*", "x"));
        assert!(!wildcard("a*b", "ac"));
    }

    #[test]
    fn each_method_gets_the_file_where_it_reads_it() {
        assert_eq!(
            with_file(json!({"model": "m"}), "llm/chat", "/f")["file_path"],
            "/f"
        );
        assert_eq!(with_file(json!({}), "llm/vision", "/f")["image_path"], "/f");
        for method in [
            "llm/chat",
            "llm/vision",
            "python/execute",
            "python/function",
        ] {
            assert_eq!(
                input_path(method, &with_file(json!({}), method, "/f")),
                Some("/f")
            );
        }
        assert_eq!(
            with_file(
                json!({"code": "x", "context": {"a": 1}}),
                "python/execute",
                "/f"
            )["context"],
            json!({"a": 1, "file_path": "/f"})
        );
        assert_eq!(
            with_file(
                json!({"function_name": "count_words"}),
                "python/function",
                "/f"
            )["kwargs"],
            json!({"file_path": "/f"})
        );
    }

    #[test]
    fn an_expanded_batch_knows_its_tasks_and_its_results_reference_stays_valid() {
        let yaml = r#"
name: b
batch: { directory: data, fail_fast: true }
template: { id: count, method: python/execute, parameters: { code: "result = 1" } }
tasks:
  - id: total
    tolerate_failures: true
    method: python/execute
    parameters: { code: "result = 1", context: { all: "${count.results}" } }
"#;
        let catalog = crate::MethodCatalog::builtin();
        let mut spec = crate::parse_workflow(yaml, &catalog).expect("valid").spec;
        assert!(spec.tasks[1].tolerate_failures);
        assert_eq!(members(&spec), None, "not expanded yet");
        let files = [PathBuf::from("/d/a"), PathBuf::from("/d/b")];
        expand(&mut spec, "count", &files, Path::new("/d"));
        assert_eq!(members(&spec), Some(("count".into(), vec![0, 1], true)));
        assert_eq!(spec.tasks[2].dependencies, ["count-00001", "count-00002"]);
        let prepared = crate::prepare_spec(spec, &catalog).expect("still valid");
        assert_eq!(prepared.spec.tasks[2].dependencies.len(), 2);
        assert!(Batch::from_json(&json!({"directory": "d", "fail_fast": 1})).is_err());
    }

    #[test]
    fn files_are_listed_by_pattern_or_extension_and_expanded() {
        let dir = std::env::temp_dir().join(format!("gz-batch-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).expect("dir");
        for f in ["a.txt", "b.md", "c.png", ".hidden.txt", "sub/d.txt"] {
            std::fs::write(dir.join(f), "x").expect("file");
        }
        let mut batch = Batch {
            directory: ".".into(),
            pattern: None,
            extensions: vec![".txt".into(), "md".into()],
            recursive: false,
            max_files: 10,
            fail_fast: false,
        };
        let files = list_files(&batch, &dir).expect("files");
        assert_eq!(files.len(), 2);
        batch.recursive = true;
        assert_eq!(list_files(&batch, &dir).expect("files").len(), 3);
        batch.max_files = 2;
        assert!(matches!(
            list_files(&batch, &dir),
            Err(BatchError::TooMany { .. })
        ));
        batch.extensions = vec![".pdf".into()];
        assert!(matches!(
            list_files(&batch, &dir),
            Err(BatchError::Empty(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
