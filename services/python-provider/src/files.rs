//! A task's own folder, and the files it names.
//!
//! Every task runs in a fresh, empty folder of its own, made under the provider's
//! `--work-dir` (default: the system temp dir); it never runs in the submitter's folder,
//! which is on another machine as often as not. Making and removing a folder per task
//! costs more than a trivial task itself (two inode changes under the parent's lock), so
//! [`Folders`] keeps the folders of tasks that ended cleanly and left them empty (and
//! private) for the next task; any other folder is removed. Telling a folder is empty takes
//! one `lstat` once it has settled ([`SETTLED`]): a folder found empty is trusted to stay so
//! while its inode and change time (which every entry added or removed, every `chmod` and
//! every rename bumps, and no task can set back) stay the same. The files a task names
//! travel with it (`ExecuteTask::files`, read by the submitter): each is written into the
//! folder, at its own path when that is relative and stays inside (`scripts/fetch.py`), else
//! under `.files/<digest>/<name>`, and the task is pointed at the copies: a `file:` script
//! runs from its copy, a batch input's `context.file_path` names its copy. A file the
//! submitter could not read fails the task with the error it carried.
//!
//! A `file:` without content (from an old client, or a path outside the workflow's folder,
//! which does not travel) is run from that path only if it exists here and lies under the
//! allowed roots ([`crate::confine`]).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use base64::Engine as _;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::TaskFile;

/// Where each path a task names has its copy.
pub type Copies = HashMap<String, PathBuf>;

/// A folder of one task's own, removed when dropped (or by [`TaskFolder::remove`]).
#[derive(Debug)]
pub struct TaskFolder {
    path: PathBuf,
    /// What the last full look at it found, when it had settled by then.
    seen: Option<Seen>,
    /// Counted among the folders its [`Folders`] has out, until it is dropped.
    _lent: Option<Lent>,
}

/// One folder out of a [`Folders`]: the count of folders out goes down when it is dropped,
/// however the task's folder ends (kept, removed, or dropped on a failed preparation).
#[derive(Debug)]
struct Lent(std::sync::Arc<AtomicUsize>);

impl Lent {
    fn new(out: &std::sync::Arc<AtomicUsize>) -> Lent {
        out.fetch_add(1, Ordering::Relaxed);
        Lent(out.clone())
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A folder found empty and private, as `lstat` showed it then: while these stay the same,
/// nothing was added to it (a new entry bumps the folder's change time, which no task can
/// set back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    dev: u64,
    ino: u64,
    mode: u32,
    ctime: (i64, i64),
}

/// How long after its last change a folder found empty is trusted by its change time:
/// change times come from a clock that moves in ticks (4–10 ms), so a change within the
/// tick of the last one could leave the time as it was; past this, any change moves it.
pub const SETTLED: std::time::Duration = std::time::Duration::from_millis(100);

impl Seen {
    fn of(st: &rustix::fs::Stat) -> Seen {
        Seen {
            dev: st.st_dev,
            ino: st.st_ino,
            mode: st.st_mode,
            #[allow(clippy::unnecessary_cast)] // i64 on 64-bit targets, not on every one
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }

    /// What to remember of a folder just found empty: only once it has settled.
    fn settled(st: &rustix::fs::Stat) -> Option<Seen> {
        let seen = Seen::of(st);
        let changed = std::time::UNIX_EPOCH.checked_add(std::time::Duration::new(
            u64::try_from(seen.ctime.0).ok()?,
            u32::try_from(seen.ctime.1).ok()?,
        ))?;
        let age = std::time::SystemTime::now().duration_since(changed).ok()?;
        (age > SETTLED).then_some(seen)
    }

    /// Whether the folder at `path` is as it was seen (one `lstat`, not following a link).
    fn still(&self, path: &Path) -> bool {
        rustix::fs::lstat(path).is_ok_and(|st| Seen::of(&st) == *self)
    }
}

impl TaskFolder {
    /// A fresh, empty folder `gz-task-…` under `root` (made if missing), readable by this
    /// user only. Its path is canonical (the root's, every link followed, joined with a
    /// name made here), so a job's checks take it as it is (`PathPolicy::resolve_for_job`).
    pub fn create(root: &Path) -> std::io::Result<TaskFolder> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(root)?;
        let root = std::fs::canonicalize(root)?;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("gz-task-{}-{n}-{nanos:08x}", std::process::id()));
            match make_private_dir(&path) {
                Ok(()) => {
                    return Ok(TaskFolder {
                        path,
                        seen: None,
                        _lent: None,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the folder and everything in it, off the async threads.
    pub async fn remove(mut self) {
        // Taken: the drop that follows has nothing left to remove.
        let path = std::mem::take(&mut self.path);
        drop(self);
        let removed = tokio::task::spawn_blocking(move || {
            let result = std::fs::remove_dir_all(&path);
            (path, result)
        })
        .await;
        if let Ok((path, Err(e))) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(folder = %path.display(), error = %e, "cannot remove a task's folder");
            }
        }
    }
}

impl Drop for TaskFolder {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Task folders under one root: made when none is free, reused when a task left its own
/// empty.
#[derive(Debug)]
pub struct Folders {
    root: PathBuf,
    free: std::sync::Mutex<Vec<(PathBuf, Option<Seen>)>>,
    /// Folders out with tasks now.
    out: std::sync::Arc<AtomicUsize>,
}

/// Most folders there are at once, out with tasks and kept empty together: a folder given
/// back is kept while they are fewer. A provider holds what its engines send it (capacity ×
/// up to `--prefetch` each, every held task with its folder), so the folders kept follow
/// that; a fixed number below it made every task past it remove a folder and the next one
/// make one (at 512 tasks held, two thirds of the provider's CPU went to `mkdir` and
/// `rmdir`, `docs/performance.md`).
pub const MAX_FOLDERS: usize = 4_096;

impl Folders {
    /// Folders under `root`.
    pub fn new(root: PathBuf) -> Self {
        Folders {
            root,
            free: std::sync::Mutex::new(Vec::new()),
            out: std::sync::Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Where folders are made.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An empty folder of the task's own: a kept one, else a new one.
    pub fn take(&self) -> std::io::Result<TaskFolder> {
        let kept = self.free.lock().ok().and_then(|mut free| free.pop());
        let mut folder = match kept {
            Some((path, seen)) => TaskFolder {
                path,
                seen,
                _lent: None,
            },
            None => TaskFolder::create(&self.root)?,
        };
        folder._lent = Some(Lent::new(&self.out));
        Ok(folder)
    }

    /// How many empty folders are kept for the next tasks.
    pub fn kept(&self) -> usize {
        self.free.lock().map_or(0, |free| free.len())
    }

    /// A task is done with its folder: kept for the next task when the task ended
    /// cleanly (no cancel, no timeout: nothing of it can still be running) and left the
    /// folder empty and private; removed otherwise.
    pub async fn give_back(&self, mut folder: TaskFolder, ended_cleanly: bool) {
        if ended_cleanly {
            let empty = match folder.seen {
                Some(seen) if seen.still(folder.path()) => Some(Some(seen)),
                _ => empty_and_private(folder.path()).map(|st| Seen::settled(&st)),
            };
            if let (Some(seen), Ok(mut free)) = (empty, self.free.lock()) {
                // `out` still counts this folder.
                if free.len() + self.out.load(Ordering::Relaxed) <= MAX_FOLDERS {
                    free.push((std::mem::take(&mut folder.path), seen));
                    return;
                }
            }
        }
        folder.remove().await;
    }
}

impl Drop for Folders {
    fn drop(&mut self) {
        if let Ok(free) = self.free.get_mut() {
            for (path, _) in free.drain(..) {
                let _ = std::fs::remove_dir(path);
            }
        }
    }
}

/// The status of `path` when it is a folder of ours with nothing in it, mode 0700, not a
/// link. The path is looked up once (opened without following a link); the checks use the
/// open folder.
fn empty_and_private(path: &Path) -> Option<rustix::fs::Stat> {
    use rustix::fs::{Dir, FileType, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let folder = rustix::fs::open(path, flags, Mode::empty()).ok()?;
    let st = rustix::fs::fstat(&folder).ok()?;
    let private =
        FileType::from_raw_mode(st.st_mode) == FileType::Directory && st.st_mode & 0o7777 == 0o700;
    if !private {
        return None;
    }
    let mut entries = Dir::new(folder).ok()?;
    entries
        .all(|e| e.is_ok_and(|e| matches!(e.file_name().to_bytes(), b"." | b"..")))
        .then_some(st)
}

fn make_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}

/// A task's folder from `folders` with the task's files written into it; fails with the
/// error a file carries when the submitter could not read it.
pub fn prepare(folders: &Folders, files: &[TaskFile]) -> Result<(TaskFolder, Copies), GzError> {
    if let Some(error) = files.iter().find_map(|f| f.error.clone()) {
        return Err(error);
    }
    let folder = folders.take().map_err(|e| {
        unprepared(format!(
            "cannot make the task's folder in {}: {e}",
            folders.root().display()
        ))
    })?;
    let mut copies = Copies::new();
    for file in files {
        let Some(content) = &file.content else {
            continue;
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(content.as_bytes())
            .map_err(|e| {
                GzError::new(
                    ErrorCode::InvalidField,
                    format!("the content of {} is not base64: {e}", file.path),
                )
            })?;
        let copy = folder.path().join(place_of(file));
        if let Some(parent) = copy.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| unprepared(format!("cannot write {}: {e}", file.path)))?;
        }
        std::fs::write(&copy, bytes)
            .map_err(|e| unprepared(format!("cannot write {}: {e}", file.path)))?;
        copies.insert(file.path.clone(), copy);
    }
    Ok((folder, copies))
}

fn unprepared(message: String) -> GzError {
    GzError::new(ErrorCode::Internal, message).with_hint(
        "the provider could not prepare the task's folder: check that its --work-dir (or the \
         system temp dir) exists, is writable and has room",
    )
}

/// Where in the task's folder a file goes: its own path when that is relative and stays
/// inside, else `.files/<digest>/<file name>`.
fn place_of(file: &TaskFile) -> PathBuf {
    let path = Path::new(&file.path);
    let mut inside = PathBuf::new();
    let mut plain = path.is_relative();
    for component in path.components() {
        match component {
            Component::Normal(part) => inside.push(part),
            Component::CurDir => {}
            Component::ParentDir => plain = plain && inside.pop(),
            Component::RootDir | Component::Prefix(_) => plain = false,
        }
    }
    if plain && inside.file_name().is_some() {
        return inside;
    }
    let digest = file
        .sha256
        .as_deref()
        .and_then(|d| d.strip_prefix("sha256:"))
        .unwrap_or("unknown");
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    Path::new(".files")
        .join(&digest[..digest.len().min(16)])
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &[u8]) -> TaskFile {
        TaskFile {
            path: path.into(),
            sha256: Some(format!("sha256:{}", "ab".repeat(32))),
            content: Some(base64::engine::general_purpose::STANDARD.encode(content)),
            error: None,
        }
    }

    #[test]
    fn a_task_folder_has_a_canonical_path_under_a_linked_root() {
        let base = std::env::temp_dir().join(format!("gz-files-link-{}", std::process::id()));
        let real = base.join("real");
        std::fs::create_dir_all(&real).expect("made");
        let link = base.join("link");
        std::os::unix::fs::symlink(&real, &link).expect("linked");
        let folder = TaskFolder::create(&link.join("tasks")).expect("created");
        let canonical = std::fs::canonicalize(folder.path()).expect("exists");
        assert_eq!(folder.path(), canonical, "the path is canonical as made");
        assert!(folder
            .path()
            .starts_with(std::fs::canonicalize(&real).expect("real")));
        drop(folder);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn files_are_written_at_their_relative_path_or_set_apart() {
        let root = std::env::temp_dir().join(format!("gz-files-unit-{}", std::process::id()));
        let files = [
            file("scripts/./a.py", b"result = 1\n"),
            file("/home/me/data.txt", b"data"),
            file("../../etc/passwd", b"no"),
        ];
        let (folder, copies) = prepare(&Folders::new(root.clone()), &files).expect("prepared");
        let at = |p: &str| {
            copies[p]
                .strip_prefix(folder.path())
                .expect("inside")
                .to_path_buf()
        };
        assert_eq!(at("scripts/./a.py"), PathBuf::from("scripts/a.py"));
        assert_eq!(
            at("/home/me/data.txt"),
            PathBuf::from(".files/abababababababab/data.txt")
        );
        assert_eq!(
            at("../../etc/passwd"),
            PathBuf::from(".files/abababababababab/passwd")
        );
        assert_eq!(
            std::fs::read_to_string(&copies["scripts/./a.py"]).expect("copy"),
            "result = 1\n"
        );
        let path = folder.path().to_path_buf();
        drop(folder);
        assert!(!path.exists(), "removed when dropped");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_file_the_submitter_could_not_read_fails_the_task_with_its_error() {
        let carried = GzError::new(ErrorCode::FileNotFound, "cannot read file_path gone.txt");
        let files = [TaskFile {
            path: "gone.txt".into(),
            sha256: None,
            content: None,
            error: Some(carried.clone()),
        }];
        let err = prepare(&Folders::new(std::env::temp_dir()), &files).expect_err("fails");
        assert_eq!(err, carried);
    }

    #[tokio::test]
    async fn an_empty_folder_is_kept_for_the_next_task_and_any_other_is_removed() {
        let root = std::env::temp_dir().join(format!("gz-folders-unit-{}", std::process::id()));
        let folders = Folders::new(root.clone());
        let first = folders.take().expect("made");
        let path = first.path().to_path_buf();
        folders.give_back(first, true).await;
        assert!(path.is_dir(), "kept");
        let again = folders.take().expect("kept one");
        assert_eq!(again.path(), path, "reused");
        // A task that left something behind: its folder goes.
        std::fs::write(again.path().join("left.txt"), "x").expect("write");
        folders.give_back(again, true).await;
        assert!(!path.exists(), "removed");
        // A cancelled task's folder goes even when empty.
        let cancelled = folders.take().expect("made");
        let cancelled_path = cancelled.path().to_path_buf();
        assert_ne!(cancelled_path, path, "a new folder");
        folders.give_back(cancelled, false).await;
        assert!(!cancelled_path.exists());
        // A folder whose mode a task changed goes too.
        use std::os::unix::fs::PermissionsExt;
        let opened = folders.take().expect("made");
        let opened_path = opened.path().to_path_buf();
        std::fs::set_permissions(&opened_path, std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        folders.give_back(opened, true).await;
        assert!(!opened_path.exists());
        // A hidden file or an empty subfolder counts as something left behind.
        for leave in [".hidden", "sub/"] {
            let used = folders.take().expect("made");
            let used_path = used.path().to_path_buf();
            if let Some(dir) = leave.strip_suffix('/') {
                std::fs::create_dir(used_path.join(dir)).expect("mkdir");
            } else {
                std::fs::write(used_path.join(leave), "x").expect("write");
            }
            folders.give_back(used, true).await;
            assert!(!used_path.exists(), "{leave} left: removed");
        }
        // A folder a task swapped for a link to an empty private folder is not kept.
        let swapped = folders.take().expect("made");
        let swapped_path = swapped.path().to_path_buf();
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir(&elsewhere).expect("mkdir");
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        std::fs::remove_dir(&swapped_path).expect("rmdir");
        std::os::unix::fs::symlink(&elsewhere, &swapped_path).expect("symlink");
        folders.give_back(swapped, true).await;
        assert!(
            std::fs::symlink_metadata(&swapped_path).is_err(),
            "the link is removed, not kept"
        );
        assert!(elsewhere.is_dir(), "what it pointed at is left alone");
        assert!(folders.take().expect("made").path() != swapped_path);
        drop(folders);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn as_many_folders_are_kept_as_were_out_at_once_up_to_the_limit() {
        let root = std::env::temp_dir().join(format!("gz-folders-many-{}", std::process::id()));
        let folders = Folders::new(root.clone());
        // More tasks held at once than the 256 folders once kept: every one comes back.
        let held: Vec<TaskFolder> = (0..600).map(|_| folders.take().expect("made")).collect();
        let paths: std::collections::HashSet<PathBuf> =
            held.iter().map(|f| f.path().to_path_buf()).collect();
        for folder in held {
            folders.give_back(folder, true).await;
        }
        assert_eq!(folders.kept(), 600, "all kept");
        // The next 600 tasks reuse them: no folder is made.
        let again: Vec<TaskFolder> = (0..600).map(|_| folders.take().expect("kept")).collect();
        assert!(again.iter().all(|f| paths.contains(f.path())), "reused");
        assert_eq!(folders.kept(), 0);
        drop(again);
        // A folder dropped without being given back (a failed preparation) is out no more.
        drop(folders.take().expect("made"));
        assert_eq!(folders.out.load(Ordering::Relaxed), 0);
        // Past the limit, folders given back are removed: out and kept stay within it.
        let held: Vec<TaskFolder> = (0..MAX_FOLDERS + 10)
            .map(|_| folders.take().expect("made"))
            .collect();
        // While all are out, the first ten given back are past the limit.
        let first = held.first().map(|f| f.path().to_path_buf()).expect("one");
        for folder in held {
            folders.give_back(folder, true).await;
        }
        assert_eq!(folders.kept(), MAX_FOLDERS);
        assert!(!first.exists(), "a folder past the limit went");
        drop(folders);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test]
    async fn a_settled_empty_folder_is_known_by_its_change_time_and_any_change_shows() {
        let root = std::env::temp_dir().join(format!("gz-settled-unit-{}", std::process::id()));
        let folders = Folders::new(root.clone());
        let fresh = folders.take().expect("made");
        let path = fresh.path().to_path_buf();
        folders.give_back(fresh, true).await;
        let young = folders.take().expect("kept");
        assert_eq!(
            young.seen, None,
            "a folder changed just now is looked into each time"
        );
        std::thread::sleep(SETTLED + std::time::Duration::from_millis(20));
        folders.give_back(young, true).await;
        let settled = folders.take().expect("kept");
        assert_eq!(settled.path(), path);
        assert!(settled.seen.is_some(), "found empty after it settled");
        folders.give_back(settled, true).await;
        let again = folders.take().expect("kept");
        assert!(again.seen.is_some(), "unchanged: still known");
        // Anything left in it moves its change time: it is looked into, and removed.
        std::fs::write(again.path().join("left.txt"), "x").expect("write");
        folders.give_back(again, true).await;
        assert!(!path.exists(), "a file left in a settled folder is found");
        // So does a file written and removed again, or a mode changed and set back: the
        // folder is looked into, found empty, and kept.
        let fresh = folders.take().expect("made");
        let path = fresh.path().to_path_buf();
        std::thread::sleep(SETTLED + std::time::Duration::from_millis(20));
        folders.give_back(fresh, true).await;
        let settled = folders.take().expect("kept");
        let seen = settled.seen.expect("settled");
        std::fs::write(path.join("gone.txt"), "x").expect("write");
        std::fs::remove_file(path.join("gone.txt")).expect("rm");
        assert!(!seen.still(&path), "the change time moved");
        folders.give_back(settled, true).await;
        assert!(path.is_dir(), "empty again: kept");
        drop(folders);
        let _ = std::fs::remove_dir_all(&root);
    }
}
