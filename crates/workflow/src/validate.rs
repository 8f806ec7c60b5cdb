//! Checks on a workflow's values, shared by YAML files and specs that arrive as JSON.
//!
//! Ranges, duplicate ids, dependencies (by id or name), `${...}` references, methods and
//! their parameter schemas, and cycles. When the spec came from YAML, a [`SourceMap`] places
//! each finding at its line and column; otherwise diagnostics carry no position.
//! Everything is O(tasks + dependencies + parameter size).

use std::collections::{HashMap, HashSet};
use std::fmt;

use gleitzeit_protocol::routing;
use serde::{Deserialize, Serialize};

use crate::catalog::MethodCatalog;
use crate::codes;
use crate::dag::{format_cycle, Dag};
use crate::diagnostic::{did_you_mean, list_for_hint, sort_by_position, Diagnostic};
use crate::limits::{task_range_issues, workflow_range_issue};
use crate::parse::SourceMap;
use crate::spec::{TaskSpec, WorkflowSpec};
use crate::substitute::{for_each_reference, PathSeg, ITEM, ITEM_INDEX};
use crate::yaml::Pos;

/// A workflow that passed validation, with the warnings it raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parsed {
    pub spec: WorkflowSpec,
    pub warnings: Vec<Diagnostic>,
}

pub use crate::limits::{MAX_ATTEMPTS_RANGE, MAX_TASK_TIMEOUT_SECS};
/// At most this many cycles are reported for one workflow.
const MAX_CYCLES_REPORTED: usize = 10;
/// Characters a task id may not contain, because references could not name it.
const FORBIDDEN_ID_CHARS: &[char] = &['.', '[', ']', '{', '}', '$'];

/// Checks a spec (for instance one that arrived as JSON) without changing it.
///
/// Dependencies may name tasks by id or name; an empty `name` or `protocol` is accepted
/// (see [`prepare_spec`] for filling them in). Diagnostics carry no positions.
pub fn validate_spec(spec: &WorkflowSpec, catalog: &MethodCatalog) -> Vec<Diagnostic> {
    let mut diagnostics = analyze(spec, None, catalog, None).diagnostics;
    sort_by_position(&mut diagnostics);
    diagnostics
}

/// Fills in defaults, validates and normalizes a spec that did not come from YAML, exactly
/// as [`crate::parse_workflow`] does for a file.
///
/// # Errors
///
/// At least one diagnostic of severity [`crate::Severity::Error`].
pub fn prepare_spec(
    spec: WorkflowSpec,
    catalog: &MethodCatalog,
) -> Result<Parsed, Vec<Diagnostic>> {
    finish(spec, catalog, None, Vec::new())
}

/// [`prepare_spec`] for a spec read by [`crate::text_parameters::parse_with_text_parameters`]:
/// its tasks' parameters are `null` and `parameters` holds them as JSON text, one per task.
/// Each task's parameters are parsed while that task is checked, and dropped after, so a
/// big spec is never held with all its parameters as trees of values.
///
/// # Errors
///
/// At least one diagnostic of severity [`crate::Severity::Error`] (also when `parameters`
/// does not hold one text per task).
pub fn prepare_spec_with_text_parameters(
    mut spec: WorkflowSpec,
    parameters: &[Box<serde_json::value::RawValue>],
    catalog: &MethodCatalog,
) -> Result<Parsed, Vec<Diagnostic>> {
    if parameters.len() != spec.tasks.len() {
        return Err(vec![Diagnostic::error(
            codes::INVALID_FIELD,
            format!(
                "{} tasks but {} parameter objects",
                spec.tasks.len(),
                parameters.len()
            ),
        )]);
    }
    apply_defaults(&mut spec, catalog);
    let analysis = analyze(&spec, Some(parameters), catalog, None);
    normalized(spec, analysis, Vec::new())
}

/// Defaults, checks, and normalized dependencies; `diagnostics` holds what the YAML reader
/// found already.
pub(crate) fn finish(
    mut spec: WorkflowSpec,
    catalog: &MethodCatalog,
    source: Option<&SourceMap>,
    diagnostics: Vec<Diagnostic>,
) -> Result<Parsed, Vec<Diagnostic>> {
    apply_defaults(&mut spec, catalog);
    let analysis = analyze(&spec, None, catalog, source);
    normalized(spec, analysis, diagnostics)
}

/// The spec with its dependencies normalized by `analysis`, unless it found an error.
fn normalized(
    mut spec: WorkflowSpec,
    analysis: Analysis,
    mut diagnostics: Vec<Diagnostic>,
) -> Result<Parsed, Vec<Diagnostic>> {
    diagnostics.extend(analysis.diagnostics);
    sort_by_position(&mut diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    let ids: Vec<String> = spec.tasks.iter().map(|t| t.id.clone()).collect();
    for (task, dependencies) in spec.tasks.iter_mut().zip(analysis.dependencies) {
        task.dependencies = dependencies.into_iter().map(|d| ids[d].clone()).collect();
    }
    Ok(Parsed {
        spec,
        warnings: diagnostics,
    })
}

/// Generated ids (`task-<position>`, skipping ids already taken), names and protocols.
fn apply_defaults(spec: &mut WorkflowSpec, catalog: &MethodCatalog) {
    let mut taken: HashSet<String> = if spec.tasks.iter().any(|t| t.id.is_empty()) {
        spec.tasks.iter().map(|t| t.id.clone()).collect()
    } else {
        HashSet::new()
    };
    for (index, task) in spec.tasks.iter_mut().enumerate() {
        if task.id.is_empty() {
            let mut id = format!("task-{}", index + 1);
            let mut suffix = 1;
            while taken.contains(&id) {
                suffix += 1;
                id = format!("task-{}-{suffix}", index + 1);
            }
            taken.insert(id.clone());
            task.id = id;
        }
        if task.name.is_empty() {
            task.name = task.id.clone();
        }
        if task.protocol.is_empty() {
            task.protocol = default_protocol(&task.method, catalog);
        }
    }
}

/// The method's protocol from the catalog, else the part before `/` plus `/v1`.
fn default_protocol(method: &str, catalog: &MethodCatalog) -> String {
    if let Some(spec) = catalog.method(method) {
        return spec.protocol.clone();
    }
    match method.split_once('/') {
        Some((prefix, _)) if !prefix.is_empty() => format!("{prefix}/v1"),
        _ => String::new(),
    }
}

pub(crate) struct Analysis {
    pub diagnostics: Vec<Diagnostic>,
    /// Per task, the indices of the tasks it depends on: explicit ones first, then the
    /// ones its references imply; each once, never itself.
    pub dependencies: Vec<Vec<usize>>,
}

/// Where to report a finding about a field.
enum Place {
    /// Report it, at this position if known.
    At(Option<Pos>),
    /// The reader already reported the field as missing or mistyped.
    Skip,
}

struct Places<'a>(Option<&'a SourceMap>);

impl Places<'_> {
    fn root(&self) -> Option<Pos> {
        self.0.and_then(|s| s.root)
    }

    fn workflow_field(&self, key: &str) -> Place {
        match self.0 {
            None => Place::At(None),
            Some(source) => match lookup(&source.fields, key) {
                Some(pos) => Place::At(pos),
                None => Place::Skip,
            },
        }
    }

    fn task(&self, task: usize) -> Option<Pos> {
        self.0.and_then(|s| s.tasks.get(task)).and_then(|t| t.at)
    }

    /// The field's position, or the task's when the field was absent (a default applies).
    fn task_field_or_task(&self, task: usize, key: &str) -> Option<Pos> {
        self.0
            .and_then(|s| s.tasks.get(task))
            .and_then(|t| lookup(&t.fields, key))
            .flatten()
            .or_else(|| self.task(task))
    }

    fn task_field(&self, task: usize, key: &str) -> Place {
        match self.0.map(|s| s.tasks.get(task)) {
            None => Place::At(None),
            Some(t) => match t.and_then(|t| lookup(&t.fields, key)) {
                Some(pos) => Place::At(pos),
                None => Place::Skip,
            },
        }
    }

    fn dependency(&self, task: usize, entry: usize) -> Option<Pos> {
        self.0
            .and_then(|s| s.tasks.get(task))
            .and_then(|t| t.dependencies.get(entry).copied().flatten())
            .or_else(|| self.task_field_or_task(task, "dependencies"))
    }

    /// Whether the parameters are worth holding to the method's schema.
    fn params_readable(&self, task: usize) -> bool {
        self.0
            .and_then(|s| s.tasks.get(task))
            .is_none_or(|t| !t.params_unreadable)
    }

    fn parameter(&self, task: usize, pointer: &str) -> Option<Pos> {
        self.0
            .and_then(|s| s.tasks.get(task))
            .and_then(|t| t.params.as_ref())
            .and_then(|params| params.walk_pointer(pointer).pos)
            .or_else(|| self.task_field_or_task(task, "parameters"))
    }
}

fn lookup(fields: &[(&'static str, Option<Pos>)], key: &str) -> Option<Option<Pos>> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, pos)| *pos)
}

/// What a word in `dependencies` or a reference resolves to.
enum Resolved {
    Task(usize),
    Unknown,
    /// A name shared by several tasks.
    Ambiguous(Vec<usize>),
}

/// Task lookup by id, then by name.
struct TaskIndex<'a> {
    by_id: HashMap<&'a str, usize>,
    by_name: HashMap<&'a str, Vec<usize>>,
    tasks: &'a [TaskSpec],
}

impl<'a> TaskIndex<'a> {
    fn new(tasks: &'a [TaskSpec]) -> Self {
        let mut by_id = HashMap::with_capacity(tasks.len());
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::with_capacity(tasks.len());
        for (index, task) in tasks.iter().enumerate() {
            by_id.entry(task.id.as_str()).or_insert(index);
            if !task.name.is_empty() {
                by_name.entry(task.name.as_str()).or_default().push(index);
            }
        }
        TaskIndex {
            by_id,
            by_name,
            tasks,
        }
    }

    fn resolve(&self, word: &str) -> Resolved {
        if let Some(&index) = self.by_id.get(word) {
            return Resolved::Task(index);
        }
        match self.by_name.get(word).map(Vec::as_slice) {
            Some([index]) => Resolved::Task(*index),
            Some(several) if several.len() > 1 => Resolved::Ambiguous(several.to_vec()),
            _ => Resolved::Unknown,
        }
    }

    /// "did you mean" plus the known ids, for an unknown task.
    fn unknown_hint(&self, word: &str) -> String {
        // Edit distances over a huge workflow would be quadratic; suggest only for small ones.
        const SUGGEST_UP_TO: usize = 2_000;
        let mut hint = String::new();
        if self.tasks.len() <= SUGGEST_UP_TO {
            let candidates = self
                .tasks
                .iter()
                .flat_map(|t| [t.id.as_str(), t.name.as_str()]);
            if let Some(close) = did_you_mean(word, candidates) {
                hint.push_str(&format!("did you mean `{close}`? "));
            }
        }
        hint.push_str("known task ids: ");
        hint.push_str(&list_for_hint(self.tasks.iter().map(|t| t.id.as_str())));
        hint
    }

    fn ids(&self, indices: &[usize]) -> String {
        list_for_hint(indices.iter().map(|&i| self.tasks[i].id.as_str()))
    }
}

/// Runs every check; never stops at the first finding.
pub(crate) fn analyze(
    spec: &WorkflowSpec,
    texts: Option<&[Box<serde_json::value::RawValue>]>,
    catalog: &MethodCatalog,
    source: Option<&SourceMap>,
) -> Analysis {
    let places = Places(source);
    let mut out = Vec::new();
    check_workflow(spec, &places, &mut out);
    let index = TaskIndex::new(&spec.tasks);
    let mut dependencies = Vec::with_capacity(spec.tasks.len());
    // `seen[d] == i + 1` marks d as already a dependency of task i: dedup without allocation.
    let mut seen = vec![0usize; spec.tasks.len()];
    let group = BatchGroup::of(spec);
    for (i, task) in spec.tasks.iter().enumerate() {
        // Parameters kept as text are parsed for this task's checks only (one that does
        // not read is `null`: "must be an object").
        let parsed = texts
            .and_then(|t| t.get(i))
            .map(|text| serde_json::from_str::<serde_json::Value>(text.get()).unwrap_or_default());
        let params = parsed.as_ref().unwrap_or(&task.parameters);
        check_task_fields(i, task, &index, &places, &mut out);
        check_method(i, task, params, catalog, &places, &mut out);
        let mut deps = Vec::with_capacity(task.dependencies.len());
        let mut add = |d: usize, deps: &mut Vec<usize>| {
            if seen[d] != i + 1 {
                seen[d] = i + 1;
                deps.push(d);
            }
        };
        for (entry, word) in task.dependencies.iter().enumerate() {
            if let Some(d) = resolve_dependency(i, entry, word, &index, &places, &mut out) {
                add(d, &mut deps);
            }
        }
        for d in check_references(i, task, params, &index, catalog, &group, &places, &mut out) {
            add(d, &mut deps);
        }
        if let Some(d) = check_fan_out(i, task, &index, &group, &places, &mut out) {
            add(d, &mut deps);
        }
        dependencies.push(deps);
    }
    check_cycles(spec, &dependencies, &places, &mut out);
    check_attachments(spec, &places, &mut out);
    Analysis {
        diagnostics: out,
        dependencies,
    }
}

fn check_workflow(spec: &WorkflowSpec, places: &Places<'_>, out: &mut Vec<Diagnostic>) {
    if spec.name.trim().is_empty() {
        if let Place::At(pos) = places.workflow_field("name") {
            out.push(
                Diagnostic::error(codes::INVALID_FIELD, "the workflow's `name` is empty")
                    .at(pos.or(places.root())),
            );
        }
    }
    if spec.tasks.is_empty() {
        if let Place::At(pos) = places.workflow_field("tasks") {
            out.push(
                Diagnostic::error(codes::INVALID_FIELD, "the workflow has no tasks")
                    .with_hint("a workflow needs at least one task")
                    .at(pos.or(places.root())),
            );
        }
    }
    if let Some(issue) = workflow_range_issue(spec) {
        if let Place::At(pos) = places.workflow_field(issue.field) {
            out.push(Diagnostic::error(codes::OUT_OF_RANGE, issue.message).at(pos));
        }
    }
}

/// The files that travel with the workflow: each content matches its digest, within the
/// limits, and every task's reference names a carried content ([`crate::attachments`]).
fn check_attachments(spec: &WorkflowSpec, places: &Places<'_>, out: &mut Vec<Diagnostic>) {
    if spec.attachments.is_empty() && spec.tasks.iter().all(|t| t.files.is_empty()) {
        return;
    }
    for issue in crate::attachments::check(spec) {
        let pos = match issue.task {
            Some(i) => places.task_field_or_task(i, "files"),
            None => places
                .0
                .and_then(|s| lookup(&s.fields, "attachments"))
                .flatten()
                .or(places.root()),
        };
        let mut diagnostic = Diagnostic::error(issue.code, issue.message);
        if issue.code == codes::ATTACHMENT_TOO_LARGE {
            diagnostic = diagnostic.with_hint(
                "files travel with the workflow: at most 8 MiB each and 16 MiB per workflow",
            );
        }
        out.push(diagnostic.at(pos));
    }
}

fn check_task_fields(
    i: usize,
    task: &TaskSpec,
    index: &TaskIndex<'_>,
    places: &Places<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let label = Label(i, task);
    if task.id.is_empty() {
        out.push(
            Diagnostic::error(codes::INVALID_FIELD, format!("task #{} has no `id`", i + 1))
                .at(places.task(i)),
        );
    } else if task.id.trim() != task.id || task.id.contains(FORBIDDEN_ID_CHARS) {
        out.push(
            Diagnostic::error(
                codes::INVALID_FIELD,
                format!("task id `{}` cannot be used in references", task.id),
            )
            .with_hint(
                "ids may not contain `.`, `[`, `]`, `{`, `}` or `$`, nor start or end with spaces",
            )
            .at(places.task_field_or_task(i, "id")),
        );
    }
    if let Some(&first) = index.by_id.get(task.id.as_str()) {
        if first != i && !task.id.is_empty() {
            let first_at = places.task_field_or_task(first, "id").map_or_else(
                || format!("task #{}", first + 1),
                |p| format!("line {}", p.line),
            );
            out.push(
                Diagnostic::error(
                    codes::VALIDATION_FAILED,
                    format!("duplicate task id `{}`", task.id),
                )
                .with_hint(format!(
                    "the id is first used at {first_at}; ids must be unique"
                ))
                .at(places.task_field_or_task(i, "id")),
            );
        }
    }
    for issue in task_range_issues(task) {
        if let Place::At(pos) = places.task_field(i, issue.field) {
            out.push(
                Diagnostic::error(codes::OUT_OF_RANGE, format!("{label}: {}", issue.message))
                    .at(pos.or(places.task(i))),
            );
        }
    }
}

fn check_method(
    i: usize,
    task: &TaskSpec,
    params: &serde_json::Value,
    catalog: &MethodCatalog,
    places: &Places<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let label = Label(i, task);
    if task.method.is_empty() {
        if let Place::At(pos) = places.task_field(i, "method") {
            out.push(
                Diagnostic::error(codes::INVALID_FIELD, format!("{label} has no `method`"))
                    .at(pos.or(places.task(i))),
            );
        }
        return;
    }
    let Some(method) = catalog.method(&task.method) else {
        out.push(
            unknown_method(catalog, &label, &task.method)
                .at(places.task_field_or_task(i, "method")),
        );
        return;
    };
    if !task.protocol.is_empty() && task.protocol != method.protocol {
        out.push(
            Diagnostic::error(
                codes::INVALID_FIELD,
                format!(
                    "{label}: method `{}` belongs to protocol `{}`, not `{}`",
                    task.method, method.protocol, task.protocol
                ),
            )
            .with_hint("leave `protocol` out; it follows from the method")
            .at(places.task_field_or_task(i, "protocol")),
        );
    }
    if !places.params_readable(i) {
        return;
    }
    if !params.is_object() {
        out.push(
            Diagnostic::error(
                codes::INVALID_FIELD,
                format!("{label}: `parameters` must be an object"),
            )
            .at(places.task_field_or_task(i, "parameters")),
        );
        return;
    }
    let mut issues = method.check_params(params);
    if issues.is_empty() && method.name == routing::PYTHON_FUNCTION {
        issues = crate::functions::check_builtin_call(params);
    }
    for issue in issues {
        let place = if issue.pointer.is_empty() {
            "parameters".to_string()
        } else {
            format!("parameter `{}`", issue.pointer)
        };
        out.push(
            Diagnostic::error(
                codes::SCHEMA_VIOLATION,
                format!("{label}: {place}: {}", issue.message),
            )
            .with_optional_hint(issue.hint)
            .at(places.parameter(i, &issue.pointer)),
        );
    }
}

fn resolve_dependency(
    i: usize,
    entry: usize,
    word: &str,
    index: &TaskIndex<'_>,
    places: &Places<'_>,
    out: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let label = Label(i, &index.tasks[i]);
    let pos = places.dependency(i, entry);
    match index.resolve(word) {
        Resolved::Task(d) if d == i => {
            out.push(
                Diagnostic::error(
                    codes::VALIDATION_FAILED,
                    format!("{label} depends on itself"),
                )
                .with_hint("remove it from its own `dependencies`")
                .at(pos),
            );
            None
        }
        Resolved::Task(d) => Some(d),
        Resolved::Unknown => {
            out.push(
                Diagnostic::error(
                    codes::VALIDATION_FAILED,
                    format!("{label} depends on `{word}`, which is not a task of this workflow"),
                )
                .with_hint(index.unknown_hint(word))
                .at(pos),
            );
            None
        }
        Resolved::Ambiguous(several) => {
            out.push(
                Diagnostic::error(
                    codes::VALIDATION_FAILED,
                    format!("{label} depends on `{word}`, the name of several tasks"),
                )
                .with_hint(format!("use one of their ids: {}", index.ids(&several)))
                .at(pos),
            );
            None
        }
    }
}

/// Reports malformed and unresolvable references; returns the tasks referenced.
#[allow(clippy::too_many_arguments)]
fn check_references(
    i: usize,
    task: &TaskSpec,
    params: &serde_json::Value,
    index: &TaskIndex<'_>,
    catalog: &MethodCatalog,
    group: &BatchGroup,
    places: &Places<'_>,
    out: &mut Vec<Diagnostic>,
) -> Vec<usize> {
    let label = Label(i, task);
    let mut referenced = Vec::new();
    for_each_reference(params, &mut |pointer, raw, parsed, _exact| {
        let pos = places.parameter(i, pointer);
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(reason) => {
                out.push(
                    Diagnostic::error(
                        codes::SUBSTITUTION_FAILED,
                        format!("{label}: malformed reference {raw}: {reason}"),
                    )
                    .with_hint("write `${task_id.field}`, e.g. `${fetch.result.items[0]}`; `$${` is a literal `${`")
                    .at(pos),
                );
                return;
            }
        };
        if task.batch.is_some() && matches!(parsed.task.as_str(), ITEM | ITEM_INDEX) {
            // A fan-out's own item: substituted per member, not a task.
            return;
        }
        if group.template.as_deref() == Some(parsed.task.as_str()) {
            if let Some(members) = &group.members {
                // An expanded batch: the reference stands for every file's task.
                referenced.extend(members.iter().copied().filter(|&d| d != i));
                return;
            }
            if let Resolved::Task(d) = index.resolve(&parsed.task) {
                // The template before expansion: `${template.results}` is the batch's.
                if d != i {
                    referenced.push(d);
                    return;
                }
            }
        }
        match index.resolve(&parsed.task) {
            Resolved::Task(d) if d == i => out.push(
                Diagnostic::error(
                    codes::SUBSTITUTION_FAILED,
                    format!("{label}: {raw} refers to the task's own result"),
                )
                .at(pos),
            ),
            Resolved::Task(d) => {
                if let Some(warning) =
                    result_field_warning(label, raw, &parsed.path, &index.tasks[d], catalog)
                {
                    out.push(warning.at(pos));
                }
                referenced.push(d);
            }
            Resolved::Unknown if matches!(parsed.task.as_str(), ITEM | ITEM_INDEX) => out.push(
                Diagnostic::error(
                    codes::SUBSTITUTION_FAILED,
                    format!("{label}: {raw} is an item, but the task does not fan out"),
                )
                .with_hint("`${item}` and `${item_index}` work in a task with `batch: {from: \"${list.result}\"}`")
                .at(pos),
            ),
            Resolved::Unknown => out.push(
                Diagnostic::error(
                    codes::SUBSTITUTION_FAILED,
                    format!(
                        "{label}: {raw} refers to `{}`, which is not a task of this workflow",
                        parsed.task
                    ),
                )
                .with_hint(index.unknown_hint(&parsed.task))
                .at(pos),
            ),
            Resolved::Ambiguous(several) => out.push(
                Diagnostic::error(
                    codes::SUBSTITUTION_FAILED,
                    format!(
                        "{label}: {raw} names `{}`, the name of several tasks",
                        parsed.task
                    ),
                )
                .with_hint(format!("use one of their ids: {}", index.ids(&several)))
                .at(pos),
            ),
        }
    });
    referenced
}

/// Checks a task's `batch: {from}` (a fan-out, [`crate::fanout`]); returns the task `from`
/// names, a dependency of the template.
fn check_fan_out(
    i: usize,
    task: &TaskSpec,
    index: &TaskIndex<'_>,
    group: &BatchGroup,
    places: &Places<'_>,
    out: &mut Vec<Diagnostic>,
) -> Option<usize> {
    let fan = task.batch.as_ref()?;
    let label = Label(i, task);
    let pos = places.task_field_or_task(i, "batch");
    if group.template.as_deref() == Some(task.id.as_str()) {
        out.push(
            Diagnostic::error(
                codes::INVALID_FIELD,
                format!("{label}: the template of a folder batch cannot also fan out"),
            )
            .with_hint("fan out in a later task: `batch: {from: \"${<template>.result}\"}`")
            .at(pos),
        );
        return None;
    }
    if let Some(clash) = index
        .tasks
        .iter()
        .find(|t| crate::fanout::is_member_id(&task.id, &t.id))
    {
        out.push(
            Diagnostic::error(
                codes::INVALID_FIELD,
                format!(
                    "{label} fans out, and task id `{}` is the id one of its items would get",
                    clash.id
                ),
            )
            .with_hint(format!(
                "rename `{}`: ids `{}-<number>` are the fan-out's",
                clash.id, task.id
            ))
            .at(pos),
        );
    }
    let source = fan.source()?;
    match index.resolve(&source) {
        Resolved::Task(d) if d != i => Some(d),
        Resolved::Task(_) => {
            out.push(
                Diagnostic::error(
                    codes::SUBSTITUTION_FAILED,
                    format!(
                        "{label}: `batch.from` {} refers to the task itself",
                        fan.from
                    ),
                )
                .at(pos),
            );
            None
        }
        Resolved::Unknown => {
            out.push(
                Diagnostic::error(
                    codes::SUBSTITUTION_FAILED,
                    format!(
                        "{label}: `batch.from` {} refers to `{source}`, which is not a task of this workflow",
                        fan.from
                    ),
                )
                .with_hint(index.unknown_hint(&source))
                .at(pos),
            );
            None
        }
        Resolved::Ambiguous(several) => {
            out.push(
                Diagnostic::error(
                    codes::SUBSTITUTION_FAILED,
                    format!(
                        "{label}: `batch.from` {} names `{source}`, the name of several tasks",
                        fan.from
                    ),
                )
                .with_hint(format!("use one of their ids: {}", index.ids(&several)))
                .at(pos),
            );
            None
        }
    }
}

/// The batch of a workflow, as references see it: `${<template>…}` names the whole batch.
struct BatchGroup {
    /// The template's id.
    template: Option<String>,
    /// The batch's tasks, once expanded.
    members: Option<Vec<usize>>,
}

impl BatchGroup {
    fn of(spec: &WorkflowSpec) -> Self {
        let template = spec
            .metadata
            .get("batch")
            .and_then(|b| b.get("template"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        let members = crate::batch::members(spec).map(|(_, members, _)| members);
        BatchGroup { template, members }
    }
}

/// A warning when a reference's first field is not in the referenced method's result.
fn result_field_warning(
    label: Label<'_>,
    raw: &str,
    path: &[PathSeg],
    target: &TaskSpec,
    catalog: &MethodCatalog,
) -> Option<Diagnostic> {
    let Some(PathSeg::Key(first)) = path.first() else {
        return None;
    };
    if first == "result" || target.batch.is_some() {
        // A fan-out's template joins its members: its result is not its method's.
        return None;
    }
    let method = catalog.method(&target.method)?;
    let fields = method
        .result_schema
        .as_ref()?
        .get("properties")?
        .as_object()?;
    if fields.contains_key(first.as_str()) {
        return None;
    }
    let names = fields.keys().map(String::as_str);
    let hint = match did_you_mean(first, names.clone()) {
        Some(close) => format!("did you mean `{close}`? "),
        None => String::new(),
    } + &format!("{} results have: {}", method.name, list_for_hint(names));
    Some(
        Diagnostic::warning(
            codes::SUBSTITUTION_FAILED,
            format!(
                "{label}: {raw}: `{first}` is not a documented field of a {} result",
                method.name
            ),
        )
        .with_hint(hint),
    )
}

fn check_cycles(
    spec: &WorkflowSpec,
    dependencies: &[Vec<usize>],
    places: &Places<'_>,
    out: &mut Vec<Diagnostic>,
) {
    let edges = dependencies
        .iter()
        .enumerate()
        .flat_map(|(task, deps)| deps.iter().map(move |&d| (task, d)));
    let dag = Dag::from_edges(spec.tasks.len(), edges);
    for cycle in dag.cycles(MAX_CYCLES_REPORTED) {
        let path: Vec<&str> = cycle.iter().map(|&t| spec.tasks[t].id.as_str()).collect();
        let first = cycle.first().copied().unwrap_or(0);
        out.push(
            Diagnostic::error(
                codes::CIRCULAR_DEPENDENCY,
                format!("circular dependency: {}", format_cycle(&path)),
            )
            .with_hint("each task depends on the next (directly or through a ${...} reference); remove one of these dependencies")
            .at(places.task_field_or_task(first, "dependencies")),
        );
    }
}

/// How messages name a task: by id, or by position if it has none. Formats lazily, so
/// checking 100,000 tasks allocates nothing for tasks without findings.
#[derive(Clone, Copy)]
struct Label<'a>(usize, &'a TaskSpec);

impl fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.id.is_empty() {
            write!(f, "task #{}", self.0 + 1)
        } else {
            write!(f, "task `{}`", self.1.id)
        }
    }
}

/// A method no protocol file defines. In a namespace of the protocol files (`python/…`,
/// `llm/…`) it is a mistake (an error, with the closest known method); elsewhere it is an
/// open method a provider may declare at registration (`docs/protocol.md` §5.7): a warning,
/// since the task fails with GZ2015 if no provider serves it.
fn unknown_method(catalog: &MethodCatalog, label: &Label<'_>, method: &str) -> Diagnostic {
    let names = catalog.names();
    let mut hint = String::new();
    if let Some(close) = did_you_mean(method, names.iter().copied()) {
        hint.push_str(&format!("did you mean `{close}`? "));
    }
    let namespace = method.split_once('/').map(|(ns, _)| ns);
    let open = namespace.is_some_and(|ns| {
        is_open_method_name(method)
            && !names
                .iter()
                .any(|n| n.split_once('/').is_some_and(|(k, _)| k == ns))
    });
    if open {
        hint.push_str(
            "it runs only if a connected provider declares it (`gz status` lists capabilities)",
        );
        return Diagnostic::warning(
            codes::UNKNOWN_METHOD,
            format!("{label}: method `{method}` is not in protocols/*.yaml"),
        )
        .with_hint(hint);
    }
    hint.push_str(&format!("known methods: {}", list_for_hint(names)));
    Diagnostic::error(
        codes::UNKNOWN_METHOD,
        format!("{label}: unknown method `{method}`"),
    )
    .with_hint(hint)
}

/// `namespace/name`: letters, digits, `_`, `-` and `.`, one slash, at most 200 bytes.
fn is_open_method_name(method: &str) -> bool {
    let ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    method.len() <= 200
        && method
            .split_once('/')
            .is_some_and(|(ns, name)| ok(ns) && ok(name))
}
