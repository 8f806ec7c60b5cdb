//! Files that travel with a workflow.
//!
//! A task may name files its provider reads: a `python/execute` script (`file`), the text an
//! `llm/*` task appends to its prompt (`file_path`), its images (`image_path`,
//! `image_paths`), a batch input. The submitter (`gz`, the Python SDK) reads each of them at
//! submit, from the workflow's folder, and the workflow carries the contents:
//!
//! - `attachments` (workflow level): digest (`sha256:<hex>`) → `{size, content}`, the content
//!   in base64, each once however many tasks name it;
//! - `files` (task level): the path as the parameters write it → that digest, or
//!   `{error: …}` for a batch input that could not be read (its task fails with that error,
//!   the other files go on).
//!
//! Providers read the contents instead of a path on their own disk, so a workflow runs the
//! same wherever its providers are. This module is the model: which parameters name files
//! ([`named_files`]), digests and encoding ([`Attacher`]), the limits, and the checks a spec
//! that arrives with attachments must pass ([`check`]). Reading the files needs the disk and
//! is the submitter's.

use base64::Engine as _;
use gleitzeit_protocol::errors::GzError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::spec::WorkflowSpec;

/// The largest file that travels with a workflow (8 MiB).
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
/// The most bytes of files one workflow carries, every distinct content counted once
/// (16 MiB: about 21 MiB as base64, within the queue-manager's 32 MiB spec limit and well
/// under the hub's 64 MiB message limit).
pub const MAX_TOTAL_BYTES: u64 = 16 * 1024 * 1024;
/// How a digest starts.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The content of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// Bytes of the file.
    pub size: u64,
    /// The file's bytes in base64 (standard alphabet, padded).
    pub content: String,
}

/// Where the content of a file a task names is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FileRef {
    /// The digest of its content in the workflow's `attachments`.
    Attached(String),
    /// The submitter could not read it (a batch input): the task fails with this error.
    Unreadable {
        /// The error, e.g. GZ9002 with the path and the reason.
        error: GzError,
    },
}

/// `sha256:<64 lowercase hex digits>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(DIGEST_PREFIX.len() + 64);
    out.push_str(DIGEST_PREFIX);
    for b in hash.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

impl Attachment {
    /// The attachment of `bytes`.
    pub fn of(bytes: &[u8]) -> Attachment {
        Attachment {
            size: bytes.len() as u64,
            content: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }

    /// The file's bytes, checked against its size and its digest `key`.
    pub fn verified(&self, key: &str) -> Result<Vec<u8>, String> {
        if !is_digest(key) {
            return Err(format!(
                "attachment key `{}` is not a digest (`sha256:` and 64 lowercase hex digits)",
                shorten(key)
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(self.content.as_bytes())
            .map_err(|e| format!("attachment {key}: its content is not base64 ({e})"))?;
        if bytes.len() as u64 != self.size {
            return Err(format!(
                "attachment {key}: its content has {} bytes, its size says {}",
                bytes.len(),
                self.size
            ));
        }
        if digest(&bytes) != key {
            return Err(format!(
                "attachment {key}: its content does not match its digest"
            ));
        }
        Ok(bytes)
    }
}

/// Whether `key` reads as a digest.
pub fn is_digest(key: &str) -> bool {
    key.strip_prefix(DIGEST_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn shorten(text: &str) -> String {
    if text.chars().count() <= 80 {
        text.to_string()
    } else {
        text.chars().take(77).chain("...".chars()).collect()
    }
}

/// Whether a path is written out, not made by a `${…}` (or `{{…}}`) reference: only such
/// paths can be read at submit.
pub fn is_literal(path: &str) -> bool {
    !path.is_empty() && !path.contains("${") && !path.contains("{{")
}

/// The literal paths a task's parameters name as files its provider reads, in order:
/// `file` of `python/execute`; `file_path`, `image_path` and each of `image_paths` of the
/// `llm/*` methods. (A batch input is named where the batch puts it,
/// [`crate::batch::input_path`].)
pub fn named_files<'a>(method: &str, params: &'a Value) -> Vec<&'a str> {
    let text = |key: &str| params.get(key).and_then(Value::as_str);
    let mut out = Vec::new();
    if method == "python/execute" {
        out.extend(text("file"));
    } else if method.starts_with("llm/") {
        out.extend(text("file_path"));
        out.extend(text("image_path"));
        if let Some(list) = params.get("image_paths").and_then(Value::as_array) {
            out.extend(list.iter().filter_map(Value::as_str));
        }
    }
    out.retain(|p| is_literal(p));
    out
}

/// The input of a task a batch made, when it travels: the file of an `llm/*` or a
/// `python/execute` task ([`crate::batch::input_path`]). A `python/function` task's
/// `kwargs.file_path` is an argument like any other and goes as it is.
pub fn batch_input<'a>(method: &str, params: &'a Value) -> Option<&'a str> {
    if method != "python/execute" && !method.starts_with("llm/") {
        return None;
    }
    crate::batch::input_path(method, params).filter(|p| is_literal(p))
}

/// Why a file cannot travel with its workflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The file alone is over [`MAX_FILE_BYTES`].
    #[error("it has {size} bytes, more than the {MAX_FILE_BYTES} bytes (8 MiB) a file may have to travel with a workflow")]
    File {
        /// Its size.
        size: u64,
    },
    /// With it the workflow would carry more than [`MAX_TOTAL_BYTES`].
    #[error("with it the workflow's files take {total} bytes, more than the {MAX_TOTAL_BYTES} bytes (16 MiB) a workflow may carry")]
    Total {
        /// The files' bytes with this one.
        total: u64,
    },
}

/// Adds files to a spec: each content once, within the limits.
#[derive(Debug, Default)]
pub struct Attacher {
    total: u64,
}

impl Attacher {
    /// An attacher for `spec`, counting the attachments it carries already.
    pub fn new(spec: &WorkflowSpec) -> Attacher {
        Attacher {
            total: spec.attachments.values().map(|a| a.size).sum(),
        }
    }

    /// Whether `size` more bytes could travel (a content already carried costs nothing).
    pub fn fits(&self, spec: &WorkflowSpec, bytes: &[u8]) -> Result<(), LimitError> {
        let size = bytes.len() as u64;
        if size > MAX_FILE_BYTES {
            return Err(LimitError::File { size });
        }
        if spec.attachments.contains_key(&digest(bytes)) {
            return Ok(());
        }
        let total = self.total.saturating_add(size);
        if total > MAX_TOTAL_BYTES {
            return Err(LimitError::Total { total });
        }
        Ok(())
    }

    /// Task `task` names `path`, whose content is `bytes`: the content is carried (once)
    /// and the task refers to it.
    pub fn attach(
        &mut self,
        spec: &mut WorkflowSpec,
        task: usize,
        path: &str,
        bytes: &[u8],
    ) -> Result<(), LimitError> {
        self.fits(spec, bytes)?;
        let key = digest(bytes);
        if !spec.attachments.contains_key(&key) {
            self.total = self.total.saturating_add(bytes.len() as u64);
            spec.attachments.insert(key.clone(), Attachment::of(bytes));
        }
        if let Some(t) = spec.tasks.get_mut(task) {
            t.files.insert(path.to_string(), FileRef::Attached(key));
        }
        Ok(())
    }
}

/// Task `task` names `path`, which could not be read: the task fails with `error`.
pub fn mark_unreadable(spec: &mut WorkflowSpec, task: usize, path: &str, error: GzError) {
    if let Some(t) = spec.tasks.get_mut(task) {
        t.files
            .insert(path.to_string(), FileRef::Unreadable { error });
    }
}

/// A problem with a spec's attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// The task whose `files` it concerns, else the workflow's `attachments`.
    pub task: Option<usize>,
    /// [`crate::codes::INVALID_FIELD`] or [`crate::codes::ATTACHMENT_TOO_LARGE`].
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Checks a spec's attachments (each a digest of its content, within the limits) and the
/// tasks' references to them (each to a carried content). Hashes every content once.
pub fn check(spec: &WorkflowSpec) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut total: u64 = 0;
    for (key, attachment) in &spec.attachments {
        if let Err(message) = attachment.verified(key) {
            issues.push(Issue {
                task: None,
                code: crate::codes::INVALID_FIELD,
                message,
            });
            continue;
        }
        if attachment.size > MAX_FILE_BYTES {
            issues.push(Issue {
                task: None,
                code: crate::codes::ATTACHMENT_TOO_LARGE,
                message: format!(
                    "attachment {key}: {}",
                    LimitError::File {
                        size: attachment.size
                    }
                ),
            });
        }
        total = total.saturating_add(attachment.size);
    }
    if total > MAX_TOTAL_BYTES {
        issues.push(Issue {
            task: None,
            code: crate::codes::ATTACHMENT_TOO_LARGE,
            message: format!(
                "the workflow's attachments take {total} bytes, more than the {MAX_TOTAL_BYTES} bytes (16 MiB) a workflow may carry"
            ),
        });
    }
    for (i, task) in spec.tasks.iter().enumerate() {
        for (path, file) in &task.files {
            if path.is_empty() {
                issues.push(Issue {
                    task: Some(i),
                    code: crate::codes::INVALID_FIELD,
                    message: format!("task `{}` names a file with an empty path", task.id),
                });
            }
            if let FileRef::Attached(key) = file {
                if !spec.attachments.contains_key(key) {
                    issues.push(Issue {
                        task: Some(i),
                        code: crate::codes::INVALID_FIELD,
                        message: format!(
                            "task `{}` names {} as attachment {}, which the workflow does not carry",
                            task.id,
                            shorten(path),
                            shorten(key)
                        ),
                    });
                }
            }
        }
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(tasks: usize) -> WorkflowSpec {
        let tasks: Vec<Value> = (0..tasks)
            .map(|i| json!({"id": format!("t{i}"), "method": "python/execute", "parameters": {"file": "s.py"}}))
            .collect();
        serde_json::from_value(json!({"name": "w", "tasks": tasks})).expect("spec")
    }

    #[test]
    fn a_thousand_tasks_naming_one_script_carry_it_once() {
        let mut s = spec(1000);
        let mut attacher = Attacher::new(&s);
        for i in 0..1000 {
            attacher
                .attach(&mut s, i, "s.py", b"result = 1\n")
                .expect("fits");
        }
        assert_eq!(s.attachments.len(), 1);
        let key = digest(b"result = 1\n");
        assert!(s
            .tasks
            .iter()
            .all(|t| t.files["s.py"] == FileRef::Attached(key.clone())));
        assert!(check(&s).is_empty(), "{:?}", check(&s));
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["tasks"][0]["files"]["s.py"], json!(key));
        assert_eq!(json["attachments"][&key]["size"], 11);
        let back: WorkflowSpec = serde_json::from_value(json).expect("back");
        assert_eq!(back, s);
    }

    #[test]
    fn limits_per_file_and_per_workflow() {
        let mut s = spec(3);
        let mut attacher = Attacher::new(&s);
        let big = vec![b'a'; (MAX_FILE_BYTES + 1) as usize];
        assert!(matches!(
            attacher.attach(&mut s, 0, "s.py", &big),
            Err(LimitError::File { .. })
        ));
        let eight = vec![b'b'; MAX_FILE_BYTES as usize];
        attacher.attach(&mut s, 0, "s.py", &eight).expect("8 MiB");
        let mut other = eight.clone();
        other[0] = b'c';
        attacher.attach(&mut s, 1, "s.py", &other).expect("16 MiB");
        attacher
            .attach(&mut s, 2, "s.py", &eight)
            .expect("the same again is free");
        other[0] = b'd';
        assert!(matches!(
            attacher.attach(&mut s, 2, "s.py", &other),
            Err(LimitError::Total { .. })
        ));
        assert!(check(&s).is_empty());
    }

    #[test]
    fn forged_or_dangling_attachments_are_refused() {
        let mut s = spec(2);
        Attacher::new(&s)
            .attach(&mut s, 0, "s.py", b"x = 1")
            .expect("fits");
        let key = digest(b"x = 1");
        s.attachments.get_mut(&key).expect("there").content = Attachment::of(b"x = 2").content;
        s.tasks[1]
            .files
            .insert("s.py".into(), FileRef::Attached(digest(b"other")));
        s.attachments.insert("md5:abc".into(), Attachment::of(b""));
        let issues = check(&s);
        let messages: Vec<&str> = issues.iter().map(|i| i.message.as_str()).collect();
        assert_eq!(issues.len(), 3, "{messages:?}");
        assert!(messages[0].contains("is not a digest"), "{messages:?}");
        assert!(
            messages[1].contains("does not match its digest"),
            "{messages:?}"
        );
        assert_eq!(issues[2].task, Some(1));
        assert!(messages[2].contains("does not carry"), "{messages:?}");
    }

    #[test]
    fn named_files_are_the_literal_paths_providers_read() {
        assert_eq!(
            named_files(
                "python/execute",
                &json!({"file": "a.py", "context": {"file_path": "x"}})
            ),
            ["a.py"]
        );
        assert_eq!(
            named_files(
                "llm/vision",
                &json!({"image_path": "a.png", "image_paths": ["b.png", "${t.result}"]})
            ),
            ["a.png", "b.png"]
        );
        assert_eq!(
            named_files("llm/chat", &json!({"file_path": "doc.md"})),
            ["doc.md"]
        );
        assert!(named_files("python/function", &json!({"kwargs": {"file_path": "x"}})).is_empty());
        assert!(named_files("python/execute", &json!({"file": "{{a.result}}"})).is_empty());
    }

    #[test]
    fn a_spec_with_attachments_reads_back_from_yaml_and_mistakes_have_positions() {
        use crate::{parse_workflow, MethodCatalog};
        let key = digest(b"result = 1\n");
        let content = Attachment::of(b"result = 1\n").content;
        let yaml = format!(
            "name: w\ntasks:\n  - id: a\n    method: python/execute\n    parameters: {{ file: s.py }}\n    files: {{ s.py: \"{key}\" }}\nattachments:\n  \"{key}\": {{ size: 11, content: \"{content}\" }}\n"
        );
        let parsed = parse_workflow(&yaml, &MethodCatalog::builtin()).expect("valid");
        assert_eq!(parsed.spec.attachments[&key].size, 11);
        assert_eq!(
            parsed.spec.tasks[0].files["s.py"],
            FileRef::Attached(key.clone())
        );

        let wrong = yaml.replace("size: 11", "size: 12");
        let diags = parse_workflow(&wrong, &MethodCatalog::builtin()).expect_err("invalid");
        assert_eq!(diags[0].code, "GZ7001");
        assert_eq!(diags[0].line, Some(8), "{diags:?}");
        let dangling = yaml.replace(
            &format!("s.py: \"{key}\""),
            &format!("s.py: \"{}\"", digest(b"x")),
        );
        let diags = parse_workflow(&dangling, &MethodCatalog::builtin()).expect_err("invalid");
        assert!(diags[0].message.contains("does not carry"), "{diags:?}");
        assert_eq!(diags[0].line, Some(6), "{diags:?}");
        let shape = yaml.replace(&format!("s.py: \"{key}\""), "s.py: 3");
        let diags = parse_workflow(&shape, &MethodCatalog::builtin()).expect_err("invalid");
        assert!(diags[0].message.contains("cannot be read"), "{diags:?}");
    }

    #[test]
    fn an_unreadable_batch_input_is_carried_as_its_error() {
        let mut s = spec(1);
        let err = GzError::new(
            gleitzeit_protocol::ErrorCode::FileNotFound,
            "cannot read gone.txt",
        );
        mark_unreadable(&mut s, 0, "gone.txt", err.clone());
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(
            json["tasks"][0]["files"]["gone.txt"]["error"]["code"],
            "GZ9002"
        );
        let back: WorkflowSpec = serde_json::from_value(json).expect("back");
        assert_eq!(
            back.tasks[0].files["gone.txt"],
            FileRef::Unreadable { error: err }
        );
        assert!(check(&back).is_empty());
    }
}
