//! Killing a worker together with every process its job started.
//!
//! Each worker runs in its own process group and makes itself a *child subreaper*
//! (`worker.py`), so a process orphaned by a job (a double-fork daemon, a child whose parent
//! exited) is re-parented to the worker instead of PID 1. Every process a job started is
//! therefore a descendant of its worker for as long as the worker lives, whatever process
//! group or session it moved to.
//!
//! [`kill_tree`] first stops the worker (it can no longer fork or reap), then walks `/proc`
//! for its descendants and stops each one, repeating until a walk finds nothing new (a
//! process forking meanwhile gets its child listed in the next walk), and finally SIGKILLs
//! the worker's process group and every process it found. Stopped processes cannot exit or
//! fork, so the list cannot go stale between the walk and the kill.
//!
//! Not contained (see `docs/python-confinement.md`): processes that were handed to another
//! parent by something outside the tree (a service manager, `at`, ssh to localhost, a
//! container runtime), and descendants of a worker that died on its own (they are orphaned
//! to PID 1 before anyone can walk the tree; the worker kills its job's processes after every
//! job and before exiting with its parent, which covers the ordinary cases).

use std::collections::{HashMap, HashSet};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

/// How many `/proc` walks to make while new descendants keep appearing.
const MAX_WALKS: usize = 50;

/// Stops and SIGKILLs the process `root`, its process group and all its descendants.
/// Returns how many processes besides `root` were killed.
pub fn kill_tree(root: u32) -> usize {
    let Some(root_pid) = pid(root) else {
        return 0;
    };
    let _ = kill_process(root_pid, Signal::STOP);
    let mut found: HashSet<u32> = HashSet::new();
    for _ in 0..MAX_WALKS {
        let fresh: Vec<u32> = descendants(root)
            .into_iter()
            .filter(|p| !found.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for p in fresh {
            if let Some(p) = pid(p) {
                let _ = kill_process(p, Signal::STOP);
            }
            found.insert(p);
        }
    }
    let _ = kill_process_group(root_pid, Signal::KILL);
    let _ = kill_process(root_pid, Signal::KILL);
    for p in found.iter().copied().filter_map(pid) {
        let _ = kill_process(p, Signal::KILL);
    }
    found.len()
}

/// SIGKILLs the process group `pgid` (a dead worker's: the id cannot be reused while the
/// group has members).
pub fn kill_group(pgid: u32) {
    if let Some(p) = pid(pgid) {
        let _ = kill_process_group(p, Signal::KILL);
    }
}

fn pid(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

/// Every live descendant of `root`, from one walk of `/proc`.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(parent) = parent_of(p) {
            children.entry(parent).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// The parent pid from `/proc/<pid>/stat` (the field after the parenthesised name, which
/// may itself contain spaces and parentheses).
fn parent_of(p: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// Whether `p` exists and is not a zombie (a killed process whose parent has not yet reaped
/// it is dead for every purpose but its `/proc` entry).
pub fn is_alive(p: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_parent_and_is_alive() {
        assert!(parent_of(std::process::id()).is_some());
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX));
    }

    #[test]
    fn kill_tree_kills_a_child_and_its_grandchild() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .expect("spawn sh");
        let root = child.id();
        let start = std::time::Instant::now();
        let grandchild = loop {
            if let Some(&g) = descendants(root).first() {
                break g;
            }
            assert!(start.elapsed().as_secs() < 5, "sleep never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(kill_tree(root), 1);
        let _ = child.wait();
        let start = std::time::Instant::now();
        while is_alive(grandchild) {
            assert!(
                start.elapsed().as_secs() < 5,
                "grandchild {grandchild} survived"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
