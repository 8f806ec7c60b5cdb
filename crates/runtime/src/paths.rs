//! Paths as every component confines them: the lexical form of a path (no `.`, `..`
//! resolved) that the submitter, the python-provider and the ollama-provider compare
//! against the folders a task may read.

use std::path::{Component, Path, PathBuf};

/// Removes `.` and resolves `..` without touching the file system (`/..` stays `/`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_are_resolved_lexically() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/../../etc")), PathBuf::from("/etc"));
        assert_eq!(normalize(Path::new("a/b/../../c")), PathBuf::from("c"));
    }
}
