//! Where a job's `file` and `cwd` may point: under the allowed roots only.
//!
//! A path is joined to its base (the workflow's folder, else the job's working directory),
//! normalised lexically and checked against the roots *before* the file system is asked
//! anything, so a path outside the roots gets the same answer (GZ2023) whether or not it
//! exists. A path that passes is then canonicalised (every symlink followed) and checked
//! again, which catches a symlink inside a root pointing outside it. The worker is handed the
//! canonical path, so it opens exactly what was checked.
//!
//! Left open (documented in `docs/python-confinement.md`): a file swapped for a symlink between
//! this check and the worker opening it, by someone who can write inside a root; and inline
//! `code`, which can open any file the provider's user can read: roots govern only what the
//! provider resolves on a task's behalf.

use std::path::{Path, PathBuf};

use crate::error::PythonError;
pub(crate) use gleitzeit_runtime::paths::normalize;

/// The folders a job's `file` and `cwd` must resolve into.
#[derive(Debug, Clone, Default)]
pub struct PathPolicy {
    /// Configured roots, each as given (normalised) and canonicalised when it exists.
    roots: Vec<Root>,
    /// Whether each job's workflow folder (`base_dir`) is a root as well.
    workflow_dir_is_root: bool,
}

#[derive(Debug, Clone)]
struct Root {
    lexical: PathBuf,
    canonical: Option<PathBuf>,
}

impl Root {
    fn new(path: &Path) -> Option<Self> {
        let lexical = normalize(&std::path::absolute(path).ok()?);
        let canonical = std::fs::canonicalize(&lexical).ok();
        Some(Self { lexical, canonical })
    }

    /// A folder whose path is canonical already (the job's own, made by the provider).
    fn canonical(path: &Path) -> Self {
        Self {
            lexical: path.to_path_buf(),
            canonical: Some(path.to_path_buf()),
        }
    }

    fn admits_lexically(&self, path: &Path) -> bool {
        path.starts_with(&self.lexical)
            || self.canonical.as_ref().is_some_and(|c| path.starts_with(c))
    }

    fn admits_canonical(&self, path: &Path) -> bool {
        self.canonical.as_ref().is_some_and(|c| path.starts_with(c))
    }
}

impl PathPolicy {
    /// The given roots, plus each job's workflow folder when `workflow_dir_is_root`.
    /// Roots that do not exist (yet) still bound lexical checks; relative roots are taken
    /// relative to the current directory.
    pub fn new(roots: &[PathBuf], workflow_dir_is_root: bool) -> Self {
        Self {
            roots: roots.iter().filter_map(|r| Root::new(r)).collect(),
            workflow_dir_is_root,
        }
    }

    /// Resolves `path` (relative paths against `base`) into a canonical path under a root.
    ///
    /// `what` names the path in errors (`python script`, `working directory`); errors quote
    /// the path as given and never anything read from the file system.
    pub fn resolve(
        &self,
        what: &str,
        path: &Path,
        base: &Path,
        workflow_dir: Option<&Path>,
    ) -> Result<PathBuf, PythonError> {
        self.resolve_for_job(what, path, base, workflow_dir, None)
    }

    /// [`PathPolicy::resolve`] for a job that has a folder of its own (`own`, made by the
    /// provider for this task): a root for this job only. Its path is canonical already
    /// (`TaskFolder::create`), so it is not looked up again for every job (two `readlink`s
    /// per job).
    pub fn resolve_for_job(
        &self,
        what: &str,
        path: &Path,
        base: &Path,
        workflow_dir: Option<&Path>,
        own: Option<&Path>,
    ) -> Result<PathBuf, PythonError> {
        let joined = base.join(path); // an absolute `path` replaces `base`
        let joined = std::path::absolute(&joined)
            .map_err(|e| PythonError::NotFound(format!("{what} {}: {e}", path.display())))?;
        let lexical = normalize(&joined);
        let workflow_root = workflow_dir
            .filter(|_| self.workflow_dir_is_root)
            .and_then(Root::new);
        let own_root = own.map(Root::canonical);
        let roots = || {
            self.roots
                .iter()
                .chain(workflow_root.as_ref())
                .chain(own_root.as_ref())
        };
        let escape = || {
            PythonError::PathEscape(format!(
                "{what} {} is outside the folders python tasks may use (the task's own folder, the \
                 data dir and --work-dir, or the provider's --allowed-roots)",
                path.display()
            ))
        };
        if !roots().any(|r| r.admits_lexically(&lexical)) {
            return Err(escape());
        }
        // The job's own folder itself (its usual working directory) is canonical already.
        let own_canonical = own_root
            .as_ref()
            .filter(|r| r.lexical == lexical)
            .and_then(|r| r.canonical.clone());
        if let Some(canonical) = own_canonical {
            return Ok(canonical);
        }
        let canonical = std::fs::canonicalize(&joined).map_err(|e| {
            let why = e
                .raw_os_error()
                .map_or_else(|| e.to_string(), describe_os_error);
            PythonError::NotFound(format!("{what} {}: {why}", lexical.display()))
        })?;
        if !roots().any(|r| r.admits_canonical(&canonical)) {
            return Err(escape());
        }
        Ok(canonical)
    }
}

/// The default data directory: `$XDG_DATA_HOME/gleitzeit` or `~/.local/share/gleitzeit`
/// (the queue-manager's default too).
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("gleitzeit");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/gleitzeit"),
        None => std::env::temp_dir().join("gleitzeit"),
    }
}

/// `std::io::Error`'s text without the trailing `(os error N)`.
fn describe_os_error(code: i32) -> String {
    let text = std::io::Error::from_raw_os_error(code).to_string();
    match text.find(" (os error") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gleitzeit_protocol::errors::ErrorCode;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gz-confine-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root/sub")).expect("scratch dir");
        std::fs::write(dir.join("root/sub/ok.py"), "x = 1\n").expect("write");
        std::fs::write(dir.join("secret.txt"), "secret\n").expect("write");
        dir
    }

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../../etc")), PathBuf::from("/etc"));
    }

    #[test]
    fn paths_inside_the_workflow_folder_resolve_and_escapes_are_refused() {
        let dir = scratch("escape");
        let root = dir.join("root");
        let policy = PathPolicy::new(&[], true);
        let ok = policy
            .resolve("python script", Path::new("sub/ok.py"), &root, Some(&root))
            .expect("inside");
        assert!(ok.ends_with("root/sub/ok.py"));

        for escape in [
            "../secret.txt",
            "sub/../../secret.txt",
            "/etc/passwd",
            "../missing",
        ] {
            let err = policy
                .resolve("python script", Path::new(escape), &root, Some(&root))
                .expect_err(escape);
            assert_eq!(err.code(), ErrorCode::SecurityViolation, "{escape}: {err}");
            assert!(!err.to_string().contains("secret\n"));
        }
        let missing = policy
            .resolve("python script", Path::new("nope.py"), &root, Some(&root))
            .expect_err("missing");
        assert_eq!(missing.code(), ErrorCode::PythonNotFound);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_symlink_pointing_outside_a_root_is_refused() {
        let dir = scratch("symlink");
        let root = dir.join("root");
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("link.py")).expect("link");
        let policy = PathPolicy::new(std::slice::from_ref(&root), false);
        let err = policy
            .resolve("python script", Path::new("link.py"), &root, None)
            .expect_err("escape through a symlink");
        assert_eq!(err.code(), ErrorCode::SecurityViolation);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn configured_roots_replace_the_workflow_folder() {
        let dir = scratch("configured");
        let root = dir.join("root");
        let policy = PathPolicy::new(&[root.join("sub")], false);
        assert!(policy
            .resolve("python script", Path::new("sub/ok.py"), &root, Some(&root))
            .is_ok());
        let err = policy
            .resolve("working directory", Path::new("."), &root, Some(&root))
            .expect_err("the workflow folder is no root here");
        assert_eq!(err.code(), ErrorCode::SecurityViolation);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
