//! The dependency graph of a workflow, for validation and scheduling.
//!
//! Tasks are nodes (by index into `WorkflowSpec::tasks`); an edge runs from a task to each
//! task it depends on. The graph is stored in compressed adjacency lists, both directions,
//! and every algorithm here is iterative and O(tasks + edges), so a scheduler can use it on
//! workflows of 100,000 tasks and chains that deep without recursion.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::WorkflowSpec;

/// Dependencies and dependents of every task, by task index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dag {
    dependency_start: Vec<usize>,
    dependency_edges: Vec<usize>,
    dependent_start: Vec<usize>,
    dependent_edges: Vec<usize>,
}

/// A dependency cycle, as task indices and ids. The first task is repeated at the end;
/// each task depends on the next: `a -> b -> a` means a depends on b and b on a.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("circular dependency: {}", self.path())]
pub struct Cycle {
    pub indices: Vec<usize>,
    pub ids: Vec<String>,
}

impl Cycle {
    fn from_indices(indices: Vec<usize>, spec: &WorkflowSpec) -> Cycle {
        let ids = indices
            .iter()
            .map(|&i| spec.tasks.get(i).map(|t| t.id.clone()).unwrap_or_default())
            .collect();
        Cycle { indices, ids }
    }

    /// `a -> b -> a` (long cycles are shortened in the middle).
    pub fn path(&self) -> String {
        let ids: Vec<&str> = self.ids.iter().map(String::as_str).collect();
        format_cycle(&ids)
    }
}

impl Dag {
    /// Builds the graph from `(task, dependency)` index pairs, in O(tasks + pairs).
    /// Each task's dependencies keep their first-seen order; duplicate pairs are kept once;
    /// pairs with an index out of range are ignored.
    pub fn from_edges<I>(task_count: usize, edges: I) -> Dag
    where
        I: IntoIterator<Item = (usize, usize)>,
    {
        let pairs: Vec<(usize, usize)> = edges
            .into_iter()
            .filter(|&(t, d)| t < task_count && d < task_count)
            .collect();
        let (start, edges) = group_by_source(task_count, &pairs);
        let (dependency_start, dependency_edges) = dedup_groups(task_count, &start, &edges);
        let reversed: Vec<(usize, usize)> = (0..task_count)
            .flat_map(|t| {
                dependency_edges[dependency_start[t]..dependency_start[t + 1]]
                    .iter()
                    .map(move |&d| (d, t))
            })
            .collect();
        let (dependent_start, dependent_edges) = group_by_source(task_count, &reversed);
        Dag {
            dependency_start,
            dependency_edges,
            dependent_start,
            dependent_edges,
        }
    }

    /// Builds the graph of a spec whose `dependencies` are task ids (as a normalized spec's
    /// are). Dependencies naming no task are skipped; [`crate::validate_spec`] reports them.
    pub fn from_spec(spec: &WorkflowSpec) -> Dag {
        let index: HashMap<&str, usize> = spec
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let edges = spec.tasks.iter().enumerate().flat_map(|(i, task)| {
            let index = &index;
            task.dependencies
                .iter()
                .filter_map(move |dep| index.get(dep.as_str()).map(|&d| (i, d)))
        });
        Dag::from_edges(spec.tasks.len(), edges)
    }

    pub fn len(&self) -> usize {
        self.dependency_start.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tasks `task` waits for.
    pub fn dependencies(&self, task: usize) -> &[usize] {
        slice(&self.dependency_start, &self.dependency_edges, task)
    }

    /// The tasks waiting for `task`.
    pub fn dependents(&self, task: usize) -> &[usize] {
        slice(&self.dependent_start, &self.dependent_edges, task)
    }

    /// Tasks with no dependencies, in index order: the ones that can start at once.
    pub fn roots(&self) -> Vec<usize> {
        (0..self.len())
            .filter(|&t| self.dependencies(t).is_empty())
            .collect()
    }

    /// Tasks in an order where each comes after all its dependencies (Kahn's algorithm,
    /// breadth-first from the roots in index order). `Err` holds the indices of one cycle.
    pub fn topological_order(&self) -> Result<Vec<usize>, Vec<usize>> {
        let n = self.len();
        let mut waiting: Vec<usize> = (0..n).map(|t| self.dependencies(t).len()).collect();
        let mut ready: VecDeque<usize> = (0..n).filter(|&t| waiting[t] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(task) = ready.pop_front() {
            order.push(task);
            for &dependent in self.dependents(task) {
                waiting[dependent] -= 1;
                if waiting[dependent] == 0 {
                    ready.push_back(dependent);
                }
            }
        }
        if order.len() == n {
            Ok(order)
        } else {
            Err(self.cycles(1).into_iter().next().unwrap_or_default())
        }
    }

    /// Up to `limit` dependency cycles, each as task indices with the first repeated at the
    /// end and rotated to start at its lowest index. Every task on a cycle is reachable from
    /// the search, so at least one cycle is found whenever there is one.
    pub fn cycles(&self, limit: usize) -> Vec<Vec<usize>> {
        const UNSEEN: u8 = 0;
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        let n = self.len();
        let mut state = vec![UNSEEN; n];
        let mut found = Vec::new();
        // The current path: (task, index of its next dependency to explore).
        let mut path: Vec<(usize, usize)> = Vec::new();
        for start in 0..n {
            if state[start] != UNSEEN {
                continue;
            }
            state[start] = ON_PATH;
            path.push((start, 0));
            while let Some(&mut (task, ref mut next)) = path.last_mut() {
                let deps = self.dependencies(task);
                if let Some(&dep) = deps.get(*next) {
                    *next += 1;
                    match state[dep] {
                        UNSEEN => {
                            state[dep] = ON_PATH;
                            path.push((dep, 0));
                        }
                        ON_PATH if found.len() < limit => {
                            found.push(cycle_on_path(&path, dep));
                        }
                        _ => {}
                    }
                } else {
                    state[task] = DONE;
                    path.pop();
                }
            }
            if found.len() >= limit {
                break;
            }
        }
        found
    }
}

/// The cycle closed by an edge from the end of `path` back to `to` (which is on the path).
fn cycle_on_path(path: &[(usize, usize)], to: usize) -> Vec<usize> {
    let from = path.iter().rposition(|&(t, _)| t == to).unwrap_or(0);
    let mut cycle: Vec<usize> = path[from..].iter().map(|&(t, _)| t).collect();
    let lowest = cycle
        .iter()
        .enumerate()
        .min_by_key(|&(_, &t)| t)
        .map_or(0, |(i, _)| i);
    cycle.rotate_left(lowest);
    if let Some(&first) = cycle.first() {
        cycle.push(first);
    }
    cycle
}

/// Compressed adjacency lists of `(from, to)` pairs (a counting sort: O(n + pairs)); the
/// targets of each source keep the pairs' order.
fn group_by_source(n: usize, pairs: &[(usize, usize)]) -> (Vec<usize>, Vec<usize>) {
    let mut start = vec![0usize; n + 1];
    for &(from, _) in pairs {
        start[from + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut next = start.clone();
    let mut targets = vec![0usize; pairs.len()];
    for &(from, to) in pairs {
        targets[next[from]] = to;
        next[from] += 1;
    }
    (start, targets)
}

/// Drops repeated targets within each source's list, keeping the first.
fn dedup_groups(n: usize, start: &[usize], targets: &[usize]) -> (Vec<usize>, Vec<usize>) {
    // `seen[t] == source + 1` marks t as already listed for this source.
    let mut seen = vec![0usize; n];
    let mut new_start = Vec::with_capacity(n + 1);
    let mut new_targets = Vec::with_capacity(targets.len());
    new_start.push(0);
    for source in 0..n {
        for &target in &targets[start[source]..start[source + 1]] {
            if seen[target] != source + 1 {
                seen[target] = source + 1;
                new_targets.push(target);
            }
        }
        new_start.push(new_targets.len());
    }
    (new_start, new_targets)
}

/// `a -> b -> c -> a`, shortened in the middle when the cycle is long.
pub(crate) fn format_cycle(ids: &[&str]) -> String {
    const SHOWN_EACH_END: usize = 8;
    if ids.len() <= 3 * SHOWN_EACH_END {
        return ids.join(" -> ");
    }
    let hidden = ids.len() - 2 * SHOWN_EACH_END;
    format!(
        "{} -> … ({hidden} more) … -> {}",
        ids[..SHOWN_EACH_END].join(" -> "),
        ids[ids.len() - SHOWN_EACH_END..].join(" -> ")
    )
}

fn slice<'a>(start: &[usize], edges: &'a [usize], task: usize) -> &'a [usize] {
    match (start.get(task), start.get(task + 1)) {
        (Some(&from), Some(&to)) => &edges[from..to],
        _ => &[],
    }
}

/// Task indices in dependency order (see [`Dag::topological_order`]). Dependencies naming
/// no task are ignored.
///
/// # Errors
///
/// The tasks' dependencies form a cycle.
pub fn topological_order(spec: &WorkflowSpec) -> Result<Vec<usize>, Cycle> {
    Dag::from_spec(spec)
        .topological_order()
        .map_err(|indices| Cycle::from_indices(indices, spec))
}

/// One dependency cycle of the spec, if it has any.
pub fn find_cycle(spec: &WorkflowSpec) -> Option<Cycle> {
    Dag::from_spec(spec)
        .cycles(1)
        .into_iter()
        .next()
        .map(|indices| Cycle::from_indices(indices, spec))
}

impl fmt::Display for Dag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tasks, {} dependencies",
            self.len(),
            self.dependency_edges.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_respects_dependencies() {
        // 0 <- 1 <- 3, 0 <- 2 <- 3
        let dag = Dag::from_edges(4, [(1, 0), (2, 0), (3, 1), (3, 2), (3, 2)]);
        assert_eq!(dag.topological_order(), Ok(vec![0, 1, 2, 3]));
        assert_eq!(dag.dependents(0), &[1, 2]);
        assert_eq!(dag.dependencies(3), &[1, 2]);
        assert_eq!(dag.roots(), vec![0]);
        assert_eq!(dag.dependencies(99), &[] as &[usize]);
    }

    #[test]
    fn cycles_are_found_and_rotated() {
        // 2 -> 0 -> 1 -> 2 (each depends on the next), plus a self-loop on 3.
        let dag = Dag::from_edges(4, [(0, 1), (1, 2), (2, 0), (3, 3)]);
        assert_eq!(dag.topological_order(), Err(vec![0, 1, 2, 0]));
        assert_eq!(dag.cycles(10), vec![vec![0, 1, 2, 0], vec![3, 3]]);
    }

    #[test]
    fn dependencies_keep_their_order() {
        let dag = Dag::from_edges(4, [(0, 3), (0, 1), (0, 3), (0, 2), (9, 1)]);
        assert_eq!(dag.dependencies(0), &[3, 1, 2]);
        assert_eq!(dag.dependents(3), &[0]);
    }

    #[test]
    fn long_cycles_are_shortened() {
        let ids: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let text = format_cycle(&ids);
        assert!(text.starts_with("t0 -> t1"), "{text}");
        assert!(text.contains("… (14 more) …"), "{text}");
        assert!(text.ends_with("t28 -> t29"), "{text}");
    }
}
