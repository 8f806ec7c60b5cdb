//! Where the workspace's binaries are: beside the running executable (`gz` next to
//! `central-hub`), or, for a test executable in `target/<profile>/deps/`, one folder up.

use std::path::{Path, PathBuf};

use crate::LaunchError;

/// The folder holding the built binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().map(Path::to_path_buf).unwrap_or(dir)
    } else {
        dir
    }
}

/// The path of the binary `name` in [`bin_dir`], if it is there.
pub fn binary(name: &str) -> Result<PathBuf, LaunchError> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(LaunchError::Missing { path })
    }
}
