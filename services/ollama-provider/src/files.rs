//! The files an `llm/*` task names: the text `file_path` appends to the prompt, the images of
//! `image_path` and `image_paths`.
//!
//! They are read from the content that travelled with the task (`ExecuteTask::files`, read
//! by the submitter at submit), never from the submitter's disk, so a task runs the same on
//! any host. A file the submitter could not read fails the task with the error it carried. A
//! path without content (an old client's task) is read here only if it lies inside the
//! task's workflow folder (`base_dir`), lexically and with symlinks followed (GZ2023
//! otherwise), and exists (GZ9002 otherwise).

use std::path::PathBuf;

use base64::Engine as _;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{ExecuteTask, TaskFile};
use gleitzeit_runtime::paths::normalize;

/// Most bytes of a `file_path` read into a prompt (a batch over a folder may name anything).
pub const MAX_TEXT_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Where a file's bytes are.
enum Source<'a> {
    /// Content that travelled with the task (base64).
    Travelled(&'a str),
    /// A path here, inside the task's workflow folder.
    Disk(PathBuf),
}

/// The text of `file_path` `path`: at most [`MAX_TEXT_FILE_BYTES`] (GZ2029), UTF-8 (GZ2028).
pub fn text(task: &ExecuteTask, path: &str) -> Result<String, GzError> {
    let what = "file_path";
    let bytes = match source(task, path, what)? {
        Source::Travelled(content) => {
            let bytes = decode(content, what, path)?;
            if bytes.len() as u64 > MAX_TEXT_FILE_BYTES {
                return Err(too_large(path, bytes.len() as u64));
            }
            bytes
        }
        Source::Disk(full) => {
            let size = std::fs::metadata(&full)
                .map_err(|e| unreadable(what, path, &e))?
                .len();
            if size > MAX_TEXT_FILE_BYTES {
                return Err(too_large(path, size));
            }
            std::fs::read(&full).map_err(|e| unreadable(what, path, &e))?
        }
    };
    String::from_utf8(bytes).map_err(|e| {
        GzError::new(
            ErrorCode::FileNotText,
            format!(
                "file_path {path} is not UTF-8 text (invalid byte at {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// The image at `path`, in base64.
pub fn image(task: &ExecuteTask, path: &str) -> Result<String, GzError> {
    match source(task, path, "image")? {
        Source::Travelled(content) => Ok(content.to_string()),
        Source::Disk(full) => {
            let bytes = std::fs::read(&full).map_err(|e| unreadable("image", path, &e))?;
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

fn source<'a>(task: &'a ExecuteTask, path: &str, what: &str) -> Result<Source<'a>, GzError> {
    match TaskFile::find(&task.files, path) {
        Some(TaskFile {
            error: Some(error), ..
        }) => Err(error.clone()),
        Some(TaskFile {
            content: Some(content),
            ..
        }) => Ok(Source::Travelled(content)),
        _ => confined(task.base_dir.as_deref(), path, what).map(Source::Disk),
    }
}

/// `path` (relative to `base`) when it lies inside `base`, lexically and once every symlink
/// is followed, and exists.
fn confined(base: Option<&str>, path: &str, what: &str) -> Result<PathBuf, GzError> {
    let outside = |why: &str| {
        GzError::new(
            ErrorCode::SecurityViolation,
            format!("{what} {path} did not travel with the task and {why}"),
        )
        .with_hint(
            "files a workflow names travel with it from the workflow's folder: submit it with \
             a current gz or SDK, with the file inside the workflow file's folder",
        )
    };
    let Some(base) = base else {
        return Err(outside("the task names no workflow folder to find it in"));
    };
    let base = std::path::absolute(base).map_err(|e| unreadable(what, path, &e))?;
    let joined = base.join(path);
    if !normalize(&joined).starts_with(normalize(&base)) {
        return Err(outside("lies outside the workflow's folder"));
    }
    let real = std::fs::canonicalize(&joined).map_err(|e| unreadable(what, path, &e))?;
    let real_base = std::fs::canonicalize(&base).map_err(|e| unreadable(what, path, &e))?;
    if !real.starts_with(real_base) {
        return Err(outside("lies outside the workflow's folder"));
    }
    Ok(real)
}

fn decode(content: &str, what: &str, path: &str) -> Result<Vec<u8>, GzError> {
    base64::engine::general_purpose::STANDARD
        .decode(content.as_bytes())
        .map_err(|e| {
            GzError::new(
                ErrorCode::InvalidField,
                format!("the content of {what} {path} is not base64: {e}"),
            )
        })
}

fn unreadable(what: &str, path: &str, e: &std::io::Error) -> GzError {
    GzError::new(
        ErrorCode::FileNotFound,
        format!("cannot read {what} {path}: {e}"),
    )
}

fn too_large(path: &str, size: u64) -> GzError {
    GzError::new(
        ErrorCode::FileTooLarge,
        format!(
            "file_path {path} has {size} bytes; text files of at most {MAX_TEXT_FILE_BYTES} bytes go into a prompt"
        ),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn task(files: Vec<TaskFile>, base_dir: Option<&Path>) -> ExecuteTask {
        ExecuteTask {
            workflow_id: "w".into(),
            task_id: "t".into(),
            attempt: 1,
            method: "llm/chat".into(),
            params: json!({}),
            timeout_ms: None,
            base_dir: base_dir.map(|b| b.display().to_string()),
            files,
        }
    }

    fn travelled(path: &str, bytes: &[u8]) -> TaskFile {
        TaskFile {
            path: path.into(),
            sha256: None,
            content: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            error: None,
        }
    }

    #[test]
    fn travelled_content_is_read_and_checked_like_a_file() {
        let t = task(
            vec![
                travelled("doc.md", b"hello"),
                travelled("bin.txt", &[0xff, 0xfe]),
                travelled("img.png", &[1, 2, 3]),
            ],
            Some(Path::new("/nonexistent-gz-folder")),
        );
        assert_eq!(text(&t, "doc.md").unwrap(), "hello");
        assert_eq!(text(&t, "bin.txt").unwrap_err().code, "GZ2028");
        assert_eq!(image(&t, "img.png").unwrap(), "AQID");
        let big = task(
            vec![travelled(
                "big.txt",
                &vec![b'a'; (MAX_TEXT_FILE_BYTES + 1) as usize],
            )],
            None,
        );
        assert_eq!(text(&big, "big.txt").unwrap_err().code, "GZ2029");
    }

    #[test]
    fn a_carried_error_fails_the_task() {
        let carried = GzError::new(ErrorCode::FileNotFound, "cannot read file_path gone.txt");
        let t = task(
            vec![TaskFile {
                path: "gone.txt".into(),
                sha256: None,
                content: None,
                error: Some(carried.clone()),
            }],
            None,
        );
        assert_eq!(text(&t, "gone.txt").unwrap_err(), carried);
    }

    #[test]
    fn a_path_without_content_is_read_only_inside_the_workflow_folder() {
        let dir = std::env::temp_dir().join(format!("gz-llm-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("flow")).unwrap();
        std::fs::write(dir.join("flow/in.txt"), "inside").unwrap();
        std::fs::write(dir.join("secret.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.join("secret.txt"), dir.join("flow/link.txt")).unwrap();
        let t = task(Vec::new(), Some(&dir.join("flow")));
        assert_eq!(text(&t, "in.txt").unwrap(), "inside");
        for escape in ["../secret.txt", "link.txt", "/etc/passwd"] {
            let e = text(&t, escape).unwrap_err();
            assert_eq!(e.code, "GZ2023", "{escape}: {e}");
            assert!(!e.message.contains("secret\n"));
        }
        assert_eq!(text(&t, "missing.txt").unwrap_err().code, "GZ9002");
        assert_eq!(
            image(&task(Vec::new(), None), "x.png").unwrap_err().code,
            "GZ2023"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
