//! The files a workflow's tasks name, read at submit so that they travel with it
//! (`gleitzeit_workflow::attachments`): providers then never need the client's disk.
//!
//! Which files: a `python/execute` script (`file`), an `llm/*` task's `file_path`,
//! `image_path` and `image_paths`, and each input of a batch. Paths are taken relative to the
//! workflow file's folder and travel only when they lie inside it, checked as the
//! python-provider checks its roots: lexically (`..` resolved, an absolute path as written)
//! and again with every symlink followed. A path outside the folder is not read (a workflow
//! file from elsewhere cannot make `gz` send `~/.ssh/id_rsa`): it goes as a path, for a
//! provider that has such a file under its own allowed roots, and is refused otherwise.
//! Paths given on the command line (`gz run --vision IMG`, `--batch-folder DIR`) are the
//! user's own choice and travel from wherever they are.
//!
//! A named file that cannot be read, or is too large, fails the submit (GZ7014, GZ7013)
//! before anything is created, naming the task and the path. A batch input that cannot be
//! read (or is over the per-file limit) fails only its own task, with the error carried in
//! the workflow, so the other files go on. Batch inputs past the per-workflow limit stay
//! paths (one note says how many): a provider on the submitting machine still reads them.

use std::ops::Range;
use std::path::{Path, PathBuf};

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_runtime::paths::normalize;
use gleitzeit_workflow::attachments::{self, Attacher, LimitError};
use gleitzeit_workflow::WorkflowSpec;
use serde_json::json;

/// Where the paths of a workflow may come from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A workflow file in this folder: relative paths resolve against it, and only files
    /// inside it travel.
    File(&'a Path),
    /// The command line, run from this folder: every path is the user's choice.
    CommandLine(&'a Path),
}

/// Reads the files the tasks of `spec` name into it; `batch_tasks` are the tasks a batch made
/// (their input is read too). Returns notes for the user: paths that stay paths.
pub fn attach(
    spec: &mut WorkflowSpec,
    origin: Origin<'_>,
    batch_tasks: Range<usize>,
) -> Result<Vec<String>, GzError> {
    let folder = Folder::new(origin);
    let mut attacher = Attacher::new(spec);
    let mut notes = Vec::new();
    // Batch inputs past the per-workflow limit: (how many, bytes).
    let mut spilled = (0u64, 0u64);
    for i in 0..spec.tasks.len() {
        let task = &spec.tasks[i];
        let mut named: Vec<(String, bool)> =
            attachments::named_files(&task.method, &task.parameters)
                .into_iter()
                .map(|p| (p.to_string(), false))
                .collect();
        if batch_tasks.contains(&i) {
            if let Some(input) = attachments::batch_input(&task.method, &task.parameters) {
                // Where a batch puts its file, the method reads a named file too.
                named.retain(|(p, _)| p != input);
                named.push((input.to_string(), true));
            }
        }
        for (path, is_batch_input) in named {
            if spec.tasks[i].files.contains_key(&path) {
                continue;
            }
            let task_id = spec.tasks[i].id.clone();
            let full = match folder.locate(&path) {
                Some(full) => full,
                None => {
                    notes.push(format!(
                        "task `{task_id}`: {path} is outside the workflow's folder, so it does not travel with the workflow; a provider must have it under its own allowed roots"
                    ));
                    continue;
                }
            };
            let limit = match read(&full) {
                Ok(bytes) => match attacher.attach(spec, i, &path, &bytes) {
                    Ok(()) => continue,
                    Err(LimitError::Total { .. }) if is_batch_input => {
                        // The batch is bigger than a workflow carries: this input stays a
                        // path, which a provider on this machine still reads.
                        spilled = (spilled.0 + 1, spilled.1 + bytes.len() as u64);
                        continue;
                    }
                    Err(e) => e,
                },
                Err(Unreadable::TooLarge(size)) => LimitError::File { size },
                Err(e) if is_batch_input => {
                    let error = GzError::new(
                        ErrorCode::FileNotFound,
                        format!("cannot read file_path {path}: {e}"),
                    );
                    attachments::mark_unreadable(spec, i, &path, error);
                    continue;
                }
                Err(e) => {
                    return Err(GzError::new(
                        ErrorCode::AttachmentUnreadable,
                        format!("task `{task_id}`: cannot read {path}: {e}"),
                    )
                    .with_details(json!({ "task_id": task_id, "path": path })))
                }
            };
            // One batch input too large fails alone; the batch as a whole must fit.
            match limit {
                LimitError::File { .. } if is_batch_input => {
                    let error = too_large(&task_id, &path, &limit);
                    attachments::mark_unreadable(spec, i, &path, error);
                }
                _ => return Err(too_large(&task_id, &path, &limit)),
            }
        }
    }
    if spilled.0 > 0 {
        notes.push(format!(
            "{} batch inputs ({:.1} MiB) do not fit the {} MiB of files a workflow carries, so they go as paths: providers on this machine read them, providers elsewhere fail those tasks with GZ2020 (split the batch to send every file)",
            spilled.0,
            spilled.1 as f64 / (1024.0 * 1024.0),
            attachments::MAX_TOTAL_BYTES / (1024 * 1024)
        ));
    }
    Ok(notes)
}

fn too_large(task_id: &str, path: &str, e: &LimitError) -> GzError {
    GzError::new(
        ErrorCode::AttachmentTooLarge,
        format!("task `{task_id}`: {path} cannot travel with the workflow: {e}"),
    )
    .with_details(json!({ "task_id": task_id, "path": path }))
}

/// Why a file could not be read.
#[derive(Debug)]
enum Unreadable {
    Io(std::io::Error),
    NotAFile,
    TooLarge(u64),
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreadable::Io(e) => write!(f, "{e}"),
            Unreadable::NotAFile => f.write_str("not a regular file"),
            Unreadable::TooLarge(size) => write!(f, "{}", LimitError::File { size: *size }),
        }
    }
}

/// The file's bytes; one over the per-file limit is refused before it is read.
fn read(path: &Path) -> Result<Vec<u8>, Unreadable> {
    let meta = std::fs::metadata(path).map_err(Unreadable::Io)?;
    if !meta.is_file() {
        return Err(Unreadable::NotAFile);
    }
    if meta.len() > attachments::MAX_FILE_BYTES {
        return Err(Unreadable::TooLarge(meta.len()));
    }
    std::fs::read(path).map_err(Unreadable::Io)
}

/// The folder paths resolve against, and whether files must lie inside it.
struct Folder {
    base: PathBuf,
    /// The folder as given (normalised) and with symlinks followed, when confined.
    confined: Option<(PathBuf, Option<PathBuf>)>,
}

impl Folder {
    fn new(origin: Origin<'_>) -> Folder {
        let (dir, confined) = match origin {
            Origin::File(dir) => (dir, true),
            Origin::CommandLine(dir) => (dir, false),
        };
        let base = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let confined = confined.then(|| (normalize(&base), std::fs::canonicalize(&base).ok()));
        Folder { base, confined }
    }

    /// The file `path` names, or `None` when it lies outside the folder (lexically, or once
    /// symlinks are followed). A path inside that does not exist is returned as it is, for
    /// the read to report.
    fn locate(&self, path: &str) -> Option<PathBuf> {
        let joined = self.base.join(path);
        let Some((lexical_root, canonical_root)) = &self.confined else {
            return Some(joined);
        };
        let lexical = normalize(&joined);
        let inside = |p: &Path| {
            p.starts_with(lexical_root) || canonical_root.as_ref().is_some_and(|c| p.starts_with(c))
        };
        if !inside(&lexical) {
            return None;
        }
        match std::fs::canonicalize(&joined) {
            Ok(real) if canonical_root.as_ref().is_some_and(|c| real.starts_with(c)) => Some(real),
            Ok(_) => None,
            Err(_) => Some(lexical),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_workflow::{parse_workflow, FileRef, MethodCatalog};

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gz-attach-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("flow/scripts")).expect("dir");
        std::fs::write(dir.join("flow/scripts/a.py"), "result = 1\n").expect("script");
        std::fs::write(dir.join("secret.txt"), "secret\n").expect("secret");
        dir
    }

    fn spec(yaml: &str) -> WorkflowSpec {
        parse_workflow(yaml, &MethodCatalog::builtin())
            .expect("valid")
            .spec
    }

    #[test]
    fn scripts_inside_the_folder_travel_once_and_paths_outside_stay_paths() {
        let dir = scratch("inside");
        let folder = dir.join("flow");
        std::os::unix::fs::symlink(dir.join("secret.txt"), folder.join("link.py")).expect("link");
        let mut s = spec(
            "name: w\ntasks:\n  - { id: a, method: python/execute, parameters: { file: scripts/a.py } }\n  - { id: b, method: python/execute, parameters: { file: ./scripts/../scripts/a.py } }\n  - { id: c, method: python/execute, parameters: { file: ../secret.txt } }\n  - { id: d, method: python/execute, parameters: { file: link.py } }\n",
        );
        let notes = attach(&mut s, Origin::File(&folder), 0..0).expect("attached");
        assert_eq!(s.attachments.len(), 1);
        assert!(matches!(
            s.tasks[0].files["scripts/a.py"],
            FileRef::Attached(_)
        ));
        assert!(matches!(
            s.tasks[1].files["./scripts/../scripts/a.py"],
            FileRef::Attached(_)
        ));
        assert!(s.tasks[2].files.is_empty() && s.tasks[3].files.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_script_fails_the_submit_naming_task_and_path() {
        let dir = scratch("missing");
        let mut s = spec(
            "name: w\ntasks:\n  - { id: a, method: python/execute, parameters: { file: scripts/nope.py } }\n",
        );
        let e = attach(&mut s, Origin::File(&dir.join("flow")), 0..0).expect_err("missing");
        assert_eq!(e.code, "GZ7014");
        assert!(
            e.message.contains("task `a`") && e.message.contains("scripts/nope.py"),
            "{e}"
        );
        let mut s = spec(
            "name: w\ntasks:\n  - { id: a, method: python/execute, parameters: { file: scripts } }\n",
        );
        let e = attach(&mut s, Origin::File(&dir.join("flow")), 0..0).expect_err("a folder");
        assert_eq!(e.code, "GZ7014");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_oversized_file_is_gz7013_and_batch_inputs_fail_alone() {
        let dir = scratch("large");
        let folder = dir.join("flow");
        let big = vec![b'a'; (attachments::MAX_FILE_BYTES + 1) as usize];
        std::fs::write(folder.join("big.txt"), &big).expect("big");
        let mut s = spec(
            "name: w\ntasks:\n  - { id: a, method: llm/chat, parameters: { model: m, messages: [{role: user, content: x}], file_path: big.txt } }\n",
        );
        let e = attach(&mut s, Origin::File(&folder), 0..0).expect_err("too large");
        assert_eq!(e.code, "GZ7013");
        let mut s = spec(
            "name: w\ntasks:\n  - { id: a, method: llm/chat, parameters: { model: m, messages: [{role: user, content: x}], file_path: big.txt } }\n  - { id: b, method: llm/chat, parameters: { model: m, messages: [{role: user, content: x}], file_path: gone.txt } }\n",
        );
        attach(&mut s, Origin::File(&folder), 0..2).expect("batch inputs fail alone");
        let code = |i: usize, p: &str| match &s.tasks[i].files[p] {
            FileRef::Unreadable { error } => error.code.clone(),
            FileRef::Attached(_) => "attached".into(),
        };
        assert_eq!(code(0, "big.txt"), "GZ7013");
        assert_eq!(code(1, "gone.txt"), "GZ9002");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn batch_inputs_past_the_workflow_limit_stay_paths_with_one_note() {
        let dir = scratch("spill");
        let folder = dir.join("flow");
        // three distinct 7 MiB inputs: two fit the 16 MiB a workflow carries, one does not
        let mut yaml = String::from("name: w\ntasks:\n");
        for i in 0..3u8 {
            let mut bytes = vec![b'a'; 7 * 1024 * 1024];
            bytes[0] = b'0' + i;
            std::fs::write(folder.join(format!("in{i}.txt")), &bytes).expect("input");
            yaml.push_str(&format!(
                "  - {{ id: t{i}, method: llm/chat, parameters: {{ model: m, messages: [{{role: user, content: x}}], file_path: in{i}.txt }} }}\n"
            ));
        }
        let mut s = spec(&yaml);
        let notes = attach(&mut s, Origin::File(&folder), 0..3).expect("the batch is submitted");
        assert_eq!(s.attachments.len(), 2);
        assert!(s.tasks[2].files.is_empty(), "the third input stays a path");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].starts_with("1 batch inputs (7.0 MiB)"),
            "{notes:?}"
        );
        // the same files named by ordinary tasks (not a batch) fail the submit instead
        let mut s = spec(&yaml);
        let e = attach(&mut s, Origin::File(&folder), 0..0).expect_err("over the limit");
        assert_eq!(e.code, "GZ7013");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn command_line_paths_travel_from_anywhere() {
        let dir = scratch("anywhere");
        let mut s = spec(&format!(
            "name: w\ntasks:\n  - {{ id: v, method: llm/vision, parameters: {{ prompt: x, image_paths: [{}] }} }}\n",
            dir.join("secret.txt").display()
        ));
        attach(&mut s, Origin::CommandLine(&dir.join("flow")), 0..0).expect("attached");
        assert_eq!(s.attachments.len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
