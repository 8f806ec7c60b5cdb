//! One workflow's dependency state: which tasks are done, which are ready, which must be
//! skipped, and the parameters of ready tasks with `${…}` references substituted.
//!
//! Pure and rebuildable: a [`Plan`] is built from the spec plus the tasks that already
//! finished, so a restarted resolver can pick up any workflow. The spec is read one task at
//! a time into what the plan keeps of it (`tasks.rs`): ids, names, the parameters as JSON
//! text (parsed when the task is released), tolerance and fan-out blocks; which results
//! each task reads is worked out once, at build. Results and failures are held only while
//! some task still reads them.
//!
//! A task that did not complete skips its dependents, except those with
//! `tolerate_failures: true`: for them it counts as finished, and they run once all their
//! dependencies have ended. For the batch of the workflow (`metadata.batch`),
//! `${<template>.results}` is every file's outcome in file order: `{file, task_id, status,
//! result}` for a completed one (its primary value, as `${t}` gives it), `{file, task_id,
//! status, error}` otherwise. The queue-manager sends a failed task's error as
//! `result: {error}` of its [`FinishedTask`].
//!
//! A task with `batch: {from}` fans out (`gleitzeit_workflow::fanout`, the code in
//! `fanout.rs`): when it would be released, its members are made instead and reported in
//! [`Resolution::expanded`]; they join the plan as tasks of their own, and once all have
//! ended the template completes ([`Resolution::joined`]) or fails, releasing its
//! dependents. A rebuilt plan derives the same members from the source's result, so the
//! finished tasks it is given may name members the spec does not have yet: they are
//! replayed once their template has expanded.
//!
//! A task that waits for one last dependency, already released, is *primed*
//! ([`Resolution::primed`], once per task): its parameters go to the queue-manager, which
//! queues it the moment that dependency completes, substituting the dependency's result
//! itself, instead of waiting for this resolver's answer (two hub messages off every hop
//! of a chain). Only tasks whose parameters read no other result are primed (and no
//! fan-out templates, and no readers of a batch): what the queue-manager does then is
//! exactly what [`Plan::finish`] would. The resolver still hears of the completion and
//! reports the task ready as usual; the queue-manager ignores that, the task being
//! queued already.
//!
//! Along a chain (a task that is its dependency's only dependent) priming reaches
//! further: a task whose one open dependency is itself primed is primed too, up to
//! [`PRIME_DEPTH`] links past the last released task. The queue-manager then runs that
//! many hops without an answer from here, and tells of the completions its primes covered
//! a few at a time (`queue-manager/src/machine/primed.rs`); each such report moves the
//! primed stretch on.

use std::collections::HashMap;
use std::ops::Range;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{BlockedTask, FinishedTask, PrimedTask, ReadyTask, Resolution};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_workflow::fanout::FanOut;
use gleitzeit_workflow::text_parameters::may_refer;
use gleitzeit_workflow::{batch, references, resolve_path, substitute, Dag};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

pub use tasks::PlanSpec;
use tasks::{Ids, SpecTasks};

/// A task releasing more dependents than this primes none of them: a chain saves two
/// relays per hop, while a wide fan-out would only send its tasks' parameters twice.
const PRIME_MAX_SIBLINGS: usize = 8;

/// How many links of a chain are primed past its last released task.
pub(crate) const PRIME_DEPTH: usize = 8;

/// Most tasks primed past the first link at once, over the whole workflow: four chains
/// primed all the way. A workflow of many chains in parallel gains nothing from it (its
/// ends reach the resolver in batches anyway), and 1,000 chains primed 8 deep held 8,000
/// tasks' parameters twice.
const DEEP_PRIMES: usize = 4 * PRIME_DEPTH;

mod fanout;
mod tasks;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Started,
    /// A fan-out template whose members are out: it waits for them to end.
    Joining,
    Completed,
    Failed,
}

/// What a failed task's [`FinishedTask::result`] holds: `{"error": GzError}`.
#[derive(serde::Deserialize)]
struct FailedResult {
    #[serde(default)]
    error: Value,
}

/// Dependency state of one workflow.
pub struct Plan {
    /// Every task's id: the spec's tasks, then the members fan-outs made.
    ids: Ids,
    /// Names of the spec's tasks that are not their ids, and the task each names.
    by_name: HashMap<Box<str>, usize>,
    /// The same names by task.
    name_of: HashMap<usize, Box<str>>,
    /// The parameters of the spec's own tasks as JSON text, parsed when the task is
    /// released: as trees of values they were ~600 bytes per task for the whole run.
    params: Vec<Box<RawValue>>,
    /// The spec's tasks that run after a dependency that did not complete.
    tolerant: Vec<bool>,
    /// The fan-out templates' `batch` blocks.
    fans: HashMap<usize, FanOut>,
    /// The spec's tasks whose results each of the spec's tasks reads (see `readers`).
    reads: Vec<Box<[u32]>>,
    dag: Dag,
    state: Vec<State>,
    remaining: Vec<u32>,
    /// Results some task still reads (see `readers`), by task.
    results: HashMap<usize, Value>,
    /// How many tasks not yet released or skipped read each of the spec's tasks' results
    /// (`${t…}` in their parameters or `batch.from`; `u32::MAX` for the batch's files, read
    /// as `${<template>.results}`). A result nobody reads any more is not kept: a
    /// 100,000-task workflow held every result here before.
    readers: Vec<u32>,
    /// How a task that did not complete ended (its status and error), while it is read.
    failures: HashMap<usize, (String, Value)>,
    /// The batch: its template's id and its tasks in file order.
    group: Option<(String, Vec<usize>)>,
    /// The members each expansion made (consecutive positions past the spec's own tasks,
    /// in item order) and their template, in the order made.
    made: Vec<(Range<usize>, usize)>,
    /// The spec's tasks already sent as [`PrimedTask`]s.
    primed: Vec<bool>,
    /// Tasks primed after a primed task, while they may still be waiting (at most
    /// [`DEEP_PRIMES`]; those no longer waiting are dropped when one more is primed).
    deep: Vec<usize>,
}

impl Plan {
    /// Builds the plan of `spec` (see [`Plan::new`]), for tests that write their specs.
    #[cfg(test)]
    pub fn build(
        spec: gleitzeit_workflow::WorkflowSpec,
        finished: &[FinishedTask],
        started: &[String],
    ) -> Result<(Plan, Resolution), GzError> {
        let text = serde_json::to_string(&spec)
            .map_err(|e| GzError::new(ErrorCode::Internal, format!("spec: {e}")))?;
        let spec = PlanSpec::read(&text)
            .map_err(|e| GzError::new(ErrorCode::Internal, format!("spec: {e}")))?;
        Plan::new(spec, finished, started)
    }

    /// Builds the plan; `finished` and `started` tasks are replayed first. The resolution
    /// lists every task ready now.
    pub fn new(
        spec: PlanSpec,
        finished: &[FinishedTask],
        started: &[String],
    ) -> Result<(Plan, Resolution), GzError> {
        let PlanSpec { metadata, tasks } = spec;
        let SpecTasks {
            ids,
            by_name,
            name_of,
            params,
            tolerant,
            fans,
            edges,
            ..
        } = tasks;
        let n = params.len();
        let dag = Dag::from_edges(n, edges);
        if let Err(cycle) = dag.topological_order() {
            let path: Vec<&str> = cycle.iter().map(|&i| ids.id(i)).collect();
            return Err(GzError::new(
                ErrorCode::CircularDependency,
                format!("circular dependency: {}", path.join(" -> ")),
            ));
        }
        let remaining = (0..n).map(|i| dag.dependencies(i).len() as u32).collect();
        let group = batch::members_by(&metadata, |id| ids.get(id))
            .map(|(template, members, _)| (template, members));
        let mut readers = vec![0u32; n];
        for &m in group.iter().flat_map(|(_, members)| members) {
            readers[m] = u32::MAX;
        }
        let lookup = |key: &str| position(&ids, &by_name, key);
        let reads: Vec<Box<[u32]>> = (0..n)
            .map(|d| read_by(&params[d], fans.get(&d), &lookup, n))
            .collect();
        let mut plan = Plan {
            ids,
            by_name,
            name_of,
            params,
            tolerant,
            fans,
            reads,
            dag,
            state: vec![State::Waiting; n],
            remaining,
            results: HashMap::new(),
            readers,
            failures: HashMap::new(),
            group,
            made: Vec::new(),
            primed: vec![false; n],
            deep: Vec::new(),
        };
        for j in plan.reads.iter().flatten() {
            let r = &mut plan.readers[*j as usize];
            *r = r.saturating_add(1);
        }
        for id in started {
            if let Some(i) = plan.ids.get(id) {
                plan.state[i] = State::Started;
            }
        }
        // A fan-out template's own record is replayed last: its members (and so its join)
        // are derived first; it still counts when it ended otherwise (cancelled, refused).
        let (templates, mut todo): (Vec<&FinishedTask>, Vec<&FinishedTask>) =
            finished.iter().partition(|f| {
                plan.ids
                    .get(&f.task_id)
                    .is_some_and(|i| plan.fans.contains_key(&i))
            });
        let mut res = Resolution::default();
        loop {
            let before = todo.len();
            let mut unknown = Vec::new();
            for f in todo {
                if plan.ids.get(&f.task_id).is_some() {
                    res.extend(plan.finish(std::slice::from_ref(f)));
                } else {
                    unknown.push(f);
                }
            }
            // Members of a template expanded just now are known from here on.
            if unknown.is_empty() || unknown.len() == before {
                break;
            }
            todo = unknown;
        }
        for f in templates {
            res.extend(plan.finish(std::slice::from_ref(f)));
        }
        let roots: Vec<usize> = (0..n)
            .filter(|&i| plan.remaining[i] == 0 && plan.state[i] == State::Waiting)
            .collect();
        for i in roots {
            plan.release(i, &mut res);
        }
        for d in 0..n {
            plan.prime(d, &mut res);
        }
        Ok((plan, res))
    }

    /// The display name of task `i` (its id when it has none of its own).
    fn name(&self, i: usize) -> &str {
        self.name_of.get(&i).map_or(self.ids.id(i), |name| name)
    }

    /// Records finished tasks and returns what that unlocks or blocks.
    pub fn finish(&mut self, finished: &[FinishedTask]) -> Resolution {
        let mut res = Resolution::default();
        for f in finished {
            let Some(i) = self.ids.get(&f.task_id) else {
                continue;
            };
            if matches!(self.state[i], State::Completed | State::Failed) {
                continue;
            }
            if f.status == "completed" {
                self.state[i] = State::Completed;
                if self.is_read(i) {
                    let result = f.result.as_ref().map_or(Value::Null, JsonText::to_value);
                    self.results.insert(i, result);
                }
                if self.member_ended(i, &mut res) {
                    continue;
                }
                for k in 0..self.dependents(i).len() {
                    let d = self.dependents(i)[k];
                    self.one_less(d, &mut res);
                }
            } else {
                self.state[i] = State::Failed;
                let error = f
                    .result
                    .as_ref()
                    .and_then(|r| r.parse::<FailedResult>().ok())
                    .map_or(Value::Null, |r| r.error);
                self.failures.insert(i, (f.status.clone(), error));
                if self.member_ended(i, &mut res) {
                    continue;
                }
                self.skip_dependents(i, &mut res);
            }
        }
        res
    }

    /// The tasks waiting for `i` in the spec's graph (none for a fan-out's members: only
    /// their template waits for them, see `member_ended`).
    fn dependents(&self, i: usize) -> &[usize] {
        if i < self.dag.len() {
            self.dag.dependents(i)
        } else {
            &[]
        }
    }

    /// A dependency of `d` ended: `d` is released when it was the last one.
    fn one_less(&mut self, d: usize, res: &mut Resolution) {
        self.remaining[d] = self.remaining[d].saturating_sub(1);
        if self.remaining[d] == 0 && self.state[d] == State::Waiting {
            self.release(d, res);
        } else {
            self.prime(d, res);
        }
    }

    /// Primes task `d` (see the module docs) when one dependency is all it still waits
    /// for, that dependency has been released (and releases at most
    /// [`PRIME_MAX_SIBLINGS`] tasks), and `d`'s parameters read no result but that
    /// dependency's.
    fn prime(&mut self, d: usize, res: &mut Resolution) {
        let eligible = d < self.dag.len()
            && !self.primed[d]
            && self.state[d] == State::Waiting
            && self.remaining[d] == 1
            && !self.fans.contains_key(&d)
            && (self.group.is_none() || self.reads[d].is_empty());
        if !eligible {
            return;
        }
        let Some(x) = self.sole_open_dependency(d) else {
            return;
        };
        // After a released task; or, along a chain, after a primed one near enough.
        let after_ok = match self.state[x] {
            State::Started => self.dag.dependents(x).len() <= PRIME_MAX_SIBLINGS,
            State::Waiting => {
                self.primed[x]
                    && self.dag.dependents(x).len() == 1
                    && self.prime_depth(x) < PRIME_DEPTH
            }
            _ => false,
        };
        if !after_ok || self.fans.contains_key(&x) || self.reads[d].iter().any(|&j| j as usize != x)
        {
            return;
        }
        let deep = self.state[x] == State::Waiting;
        if deep {
            let state = &self.state;
            self.deep.retain(|&t| state[t] == State::Waiting);
            if self.deep.len() >= DEEP_PRIMES {
                return;
            }
        }
        let Ok(params) = self.parameters(d) else {
            return;
        };
        if deep {
            self.deep.push(d);
        }
        self.primed[d] = true;
        res.primed.push(PrimedTask {
            task_id: self.ids.id(d).to_owned(),
            after: self.ids.id(x).to_owned(),
            params,
        });
        self.prime_chain(d, res);
    }

    /// Primes the next link of a chain after task `d` (primed or released): the one task
    /// that depends on `d`, when it waits for `d` alone and is not too far ahead.
    fn prime_chain(&mut self, d: usize, res: &mut Resolution) {
        if d >= self.dag.len() || self.dag.dependents(d).len() != 1 {
            return;
        }
        let next = self.dag.dependents(d)[0];
        if next < self.primed.len() && self.primed[next] {
            // Primed already: the stretch may reach further now that `d` is nearer the
            // front (bounded by the depth, which grows along the way).
            if self.prime_depth(next) < PRIME_DEPTH {
                self.prime_chain(next, res);
            }
            return;
        }
        self.prime(next, res);
    }

    /// How many primed links lie between task `x` and a released (or ended) task: 0 for
    /// a task that is not waiting, at most [`PRIME_DEPTH`] (the walk stops there).
    fn prime_depth(&self, x: usize) -> usize {
        let (mut at, mut depth) = (x, 0);
        while at < self.primed.len() && self.primed[at] && self.state[at] == State::Waiting {
            depth += 1;
            if depth >= PRIME_DEPTH {
                break;
            }
            match self.sole_open_dependency(at) {
                Some(y) => at = y,
                None => break,
            }
        }
        depth
    }

    /// The one dependency of task `d` that has not ended, if exactly one has not.
    fn sole_open_dependency(&self, d: usize) -> Option<usize> {
        let mut open = self
            .dag
            .dependencies(d)
            .iter()
            .copied()
            .filter(|&x| !matches!(self.state[x], State::Completed | State::Failed));
        match (open.next(), open.next()) {
            (Some(x), None) => Some(x),
            _ => None,
        }
    }

    /// Task `i`'s parameters (as the spec gave them, `${…}` not yet substituted).
    pub(super) fn parameters(&self, i: usize) -> Result<Value, GzError> {
        match self.params.get(i) {
            Some(text) => serde_json::from_str(text.get()).map_err(|e| {
                GzError::new(ErrorCode::Internal, format!("parameters unreadable: {e}"))
            }),
            None => Ok(Value::Null),
        }
    }

    /// `${<template>.results}`'s value when `params` (a task's) refer to the batch (see the
    /// module docs); `None` otherwise.
    fn group_value(&self, params: &Value) -> Option<Value> {
        let (template, members) = self.group.as_ref()?;
        if !references(params).iter().any(|r| &r.task == template) {
            return None;
        }
        let results: Vec<Value> = members
            .iter()
            .map(|&m| {
                let mut entry = Map::new();
                entry.insert("file".into(), json!(self.name(m)));
                entry.insert("task_id".into(), json!(self.ids.id(m)));
                match (self.results.get(&m), self.failures.get(&m)) {
                    (Some(result), _) => {
                        entry.insert("status".into(), json!("completed"));
                        let primary = resolve_path(result, &[]).unwrap_or(result);
                        entry.insert("result".into(), primary.clone());
                    }
                    (None, Some((status, error))) => {
                        entry.insert("status".into(), json!(status));
                        entry.insert("error".into(), error.clone());
                    }
                    (None, None) => {
                        entry.insert("status".into(), json!("pending"));
                    }
                }
                Value::Object(entry)
            })
            .collect();
        let completed = results
            .iter()
            .filter(|r| r["status"] == "completed")
            .count();
        Some(json!({
            "results": results,
            "completed": completed,
            "failed": results.len() - completed,
        }))
    }

    /// Whether task `i`'s result is still to be read (a fan-out's members' results always
    /// are: their template joins them).
    fn is_read(&self, i: usize) -> bool {
        self.readers.get(i).is_none_or(|&r| r > 0)
    }

    /// Task `d` was released or skipped: the results only it still read are dropped.
    fn done_reading(&mut self, d: usize) {
        if d >= self.readers.len() {
            return;
        }
        for k in 0..self.reads[d].len() {
            let j = self.reads[d][k] as usize;
            let r = &mut self.readers[j];
            if *r == u32::MAX || *r == 0 {
                continue;
            }
            *r -= 1;
            if *r == 0 {
                self.results.remove(&j);
            }
        }
    }

    /// The result a reference to task `key` (id or name) reads, if it has one.
    fn result_of(&self, key: &str) -> Option<&Value> {
        let j = position(&self.ids, &self.by_name, key)?;
        self.results.get(&j)
    }

    /// Substitutes a ready task's parameters and reports it ready (or failed); a fan-out
    /// template expands instead.
    fn release(&mut self, i: usize, res: &mut Resolution) {
        if self.fans.contains_key(&i) {
            self.expand(i, res);
        } else {
            self.substitute_ready(i, res);
        }
        self.done_reading(i);
    }

    /// Substitutes a ready task's parameters and reports it ready (or failed). Parameters
    /// that refer to nothing go out as the text they came in (not parsed).
    fn substitute_ready(&mut self, i: usize, res: &mut Resolution) {
        if let Some(text) = self.params.get(i).filter(|t| !may_refer(t)) {
            let params = JsonText::from_raw(text.clone());
            return self.ready(i, params, res);
        }
        let parameters = match self.parameters(i) {
            Ok(p) => p,
            Err(error) => return self.fail(i, error, res),
        };
        let group = self.group_value(&parameters);
        let lookup = |key: &str| -> Option<&Value> {
            if let (Some(value), Some((template, _))) = (&group, &self.group) {
                if key == template {
                    return Some(value);
                }
            }
            self.result_of(key)
        };
        match substitute(&parameters, &lookup) {
            Ok(params) => self.ready(i, JsonText::of_value(&params), res),
            Err(e) => {
                let error = GzError::new(
                    ErrorCode::SubstitutionFailed,
                    format!("task {}: {e}", self.ids.id(i)),
                );
                self.fail(i, error, res);
            }
        }
    }

    /// Task `i` is ready with `params`: it starts, and the tasks waiting only for it are primed.
    fn ready(&mut self, i: usize, params: JsonText, res: &mut Resolution) {
        self.state[i] = State::Started;
        res.ready.push(ReadyTask {
            task_id: self.ids.id(i).to_owned(),
            params,
        });
        if self.dependents(i).len() == 1 {
            // A chain: its next link, or the stretch primed ahead, reaches on from here.
            self.prime_chain(i, res);
        } else {
            for k in 0..self.dependents(i).len() {
                let d = self.dependents(i)[k];
                self.prime(d, res);
            }
        }
    }

    /// Task `t` fails before running: its dependents are skipped (tolerant ones released).
    fn fail(&mut self, t: usize, error: GzError, res: &mut Resolution) {
        self.failures.insert(t, ("failed".into(), json!(error)));
        res.failed.push(BlockedTask {
            task_id: self.ids.id(t).to_owned(),
            error,
        });
        self.state[t] = State::Failed;
        self.skip_dependents(t, res);
    }

    /// Marks every task downstream of `i` skipped (iteratively: chains can be 100k deep),
    /// up to the tasks that tolerate failures: for them the skipped dependency counts as
    /// ended. Each edge is met once (a task is pushed once per dependency that just ended).
    fn skip_dependents(&mut self, i: usize, res: &mut Resolution) {
        let failed_id = self.ids.id(i).to_owned();
        let mut tolerant = Vec::new();
        let mut stack: Vec<usize> = self.dependents(i).to_vec();
        while let Some(d) = stack.pop() {
            if self.tolerant.get(d).copied().unwrap_or(false) {
                tolerant.push(d);
                continue;
            }
            if matches!(self.state[d], State::Failed | State::Completed) {
                continue;
            }
            if self.state[d] == State::Waiting {
                self.done_reading(d);
            }
            self.state[d] = State::Failed;
            let error = GzError::new(
                ErrorCode::DependencyFailed,
                format!("skipped: dependency {failed_id} did not complete"),
            );
            self.failures.insert(d, ("skipped".into(), json!(error)));
            res.skipped.push(BlockedTask {
                task_id: self.ids.id(d).to_owned(),
                error,
            });
            stack.extend_from_slice(self.dependents(d));
        }
        for d in tolerant {
            self.one_less(d, res);
        }
    }
}

/// The position of the task a reference names (`key`: an id, else a name).
fn position(ids: &Ids, by_name: &HashMap<Box<str>, usize>, key: &str) -> Option<usize> {
    ids.get(key).or_else(|| by_name.get(key).copied())
}

/// The spec's tasks whose results task `d` reads (each once): `${t…}` in its parameters
/// (`params`, parsed only when they may hold a reference) or its `batch.from` (`fan`);
/// `position` finds a task by id or name, `n` is the spec's task count.
fn read_by(
    params: &RawValue,
    fan: Option<&FanOut>,
    position: &impl Fn(&str) -> Option<usize>,
    n: usize,
) -> Box<[u32]> {
    let mut keys: Vec<String> = Vec::new();
    if may_refer(params) {
        let parsed: Value = serde_json::from_str(params.get()).unwrap_or(Value::Null);
        keys.extend(references(&parsed).into_iter().map(|r| r.task));
    }
    if let Some(fan) = fan {
        keys.extend(
            references(&Value::String(fan.from.clone()))
                .into_iter()
                .map(|r| r.task),
        );
    }
    let mut read: Vec<u32> = keys
        .iter()
        .filter_map(|k| position(k))
        .filter(|&j| j < n)
        .filter_map(|j| u32::try_from(j).ok())
        .collect();
    read.sort_unstable();
    read.dedup();
    read.into_boxed_slice()
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_primed;
