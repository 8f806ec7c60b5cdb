//! Reading a workflow from YAML: every dialect the original accepted, every mistake reported.
//!
//! The YAML text is parsed into a positioned tree ([`crate::yaml`]); this module walks the
//! tree key by key, builds a [`WorkflowSpec`] and remembers where each value came from
//! ([`SourceMap`]), so that the checks in [`crate::validate`] can report line and column.
//! Shape problems (unknown keys, wrong types, missing fields) are reported here; problems
//! with the values themselves (ranges, duplicates, dependencies, schemas) are reported by the
//! checks shared with specs that arrive as JSON.

use std::collections::BTreeMap;

use serde_json::{Map, Number, Value};

use crate::batch;
use crate::catalog::MethodCatalog;
use crate::codes;
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::dialect;
use crate::fanout::FanOut;
use crate::spec::{Backoff, OnFailure, Priority, RetryPolicy, TaskSpec, WorkflowSpec};
use crate::validate::{finish, Parsed};
use crate::yaml::{self, Node, NodeValue, Pos};

const WORKFLOW_KEYS: &[&str] = &[
    "name",
    "description",
    "id",
    "metadata",
    "tasks",
    "timeout",
    "on_failure",
    "version",
    "wait_for_completion",
    "batch",
    "template",
    "type",
    "attachments",
];

const TASK_KEYS: &[&str] = &[
    "id",
    "name",
    "method",
    "protocol",
    "parameters",
    "params",
    "dependencies",
    "priority",
    "timeout",
    "retry",
    "files",
    "tolerate_failures",
    "batch",
];

const RETRY_KEYS: &[&str] = &[
    "max_attempts",
    "backoff",
    "base_delay",
    "max_delay",
    "jitter",
];

/// Where the values of a workflow read from YAML came from.
///
/// A field is recorded only when its value was read successfully, so a later check knows
/// that a missing field was already reported as missing or mistyped.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    pub root: Option<Pos>,
    pub fields: Vec<(&'static str, Option<Pos>)>,
    pub tasks: Vec<TaskSource>,
}

/// Where the values of one task came from.
#[derive(Debug, Default)]
pub(crate) struct TaskSource {
    pub at: Option<Pos>,
    /// Task keys, and `retry.<key>` for the keys of its retry block.
    pub fields: Vec<(&'static str, Option<Pos>)>,
    /// Position of each entry of `dependencies`, in order.
    pub dependencies: Vec<Option<Pos>>,
    /// The parameters as a YAML tree, to place JSON pointers.
    pub params: Option<Node>,
    /// The parameters were given but could not be read (or their key was misspelt), so a
    /// schema check would only repeat that mistake.
    pub params_unreadable: bool,
}

/// Parses a workflow file and validates it against `catalog`.
///
/// On success the spec is normalized (ids, names and protocols filled in; `dependencies`
/// resolved to task ids and extended by the tasks that `${...}` references point at) and
/// comes with any warnings. On failure every problem found is returned, errors and
/// warnings, sorted by position; each carries the line and column of the YAML node.
///
/// # Errors
///
/// At least one diagnostic of severity [`crate::Severity::Error`].
pub fn parse_workflow(yaml: &str, catalog: &MethodCatalog) -> Result<Parsed, Vec<Diagnostic>> {
    let root = match yaml::parse(yaml) {
        Ok(root) => root,
        Err(err) => {
            let hint = if err.message.starts_with("duplicate mapping key") {
                "each key may appear only once in a mapping"
            } else {
                "check indentation, quotes and brackets near this position"
            };
            return Err(vec![Diagnostic::error(
                codes::YAML_PARSE_ERROR,
                format!("invalid YAML: {}", err.message),
            )
            .with_hint(hint)
            .at(err.pos)]);
        }
    };
    let mut reader = Reader::default();
    let Some((spec, source)) = reader.workflow(&root) else {
        return Err(reader.diagnostics);
    };
    finish(spec, catalog, Some(&source), reader.diagnostics)
}

#[derive(Default)]
struct Reader {
    diagnostics: Vec<Diagnostic>,
}

/// The scalar forms a value may take, for "expected ..." messages.
enum Expect {
    Text,
    Number,
    Bool,
}

impl Reader {
    fn error(&mut self, message: impl Into<String>, pos: Option<Pos>) {
        self.diagnostics
            .push(Diagnostic::error(codes::INVALID_FIELD, message).at(pos));
    }

    fn out_of_range(&mut self, message: impl Into<String>, pos: Option<Pos>) {
        self.diagnostics
            .push(Diagnostic::error(codes::OUT_OF_RANGE, message).at(pos));
    }

    fn wrong_type(&mut self, what: &str, expected: &str, node: &Node) {
        self.error(
            format!("{what} must be {expected}, not {}", node.kind()),
            node.pos,
        );
    }

    /// Reports an unknown key; returns the key it probably meant.
    fn unknown_key(
        &mut self,
        key: &str,
        context: &str,
        allowed: &[&'static str],
        pos: Option<Pos>,
    ) -> Option<&'static str> {
        let mut hint = String::new();
        let close = did_you_mean(key, allowed.iter().copied());
        if let Some(close) = close {
            hint.push_str(&format!("did you mean `{close}`? "));
        }
        hint.push_str(&format!("allowed keys: {}", allowed.join(", ")));
        self.diagnostics.push(
            Diagnostic::error(
                codes::INVALID_FIELD,
                format!("unknown key `{key}` in {context}"),
            )
            .with_hint(hint)
            .at(pos),
        );
        close
    }

    /// The entries of a mapping node with their keys as text; reports keys that are not
    /// plain scalars.
    fn entries<'n>(&mut self, node: &'n Node) -> Vec<(String, &'n Node, &'n Node)> {
        let NodeValue::Map(entries) = &node.value else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match key.scalar_text() {
                Some(text) => out.push((text, key, value)),
                None => self.error(
                    format!("a key must be a plain word, not {}", key.kind()),
                    key.pos,
                ),
            }
        }
        out
    }

    fn workflow(&mut self, root: &Node) -> Option<(WorkflowSpec, SourceMap)> {
        if root.value == NodeValue::Null {
            self.diagnostics.push(
                Diagnostic::error(codes::INVALID_FIELD, "the workflow file is empty")
                    .with_hint("start the file with `name: ...` and a `tasks:` list")
                    .at(root.pos),
            );
            return None;
        }
        if !matches!(root.value, NodeValue::Map(_)) {
            self.diagnostics.push(
                Diagnostic::error(
                    codes::INVALID_FIELD,
                    format!(
                        "a workflow must be a mapping with `name` and `tasks`, not {}",
                        root.kind()
                    ),
                )
                .with_hint("start the file with `name: ...` and a `tasks:` list")
                .at(root.pos),
            );
            return None;
        }
        let mut spec = WorkflowSpec {
            id: None,
            name: String::new(),
            description: None,
            metadata: Value::Object(Map::new()),
            timeout: None,
            on_failure: OnFailure::Fail,
            tasks: Vec::new(),
            attachments: BTreeMap::new(),
        };
        let mut source = SourceMap {
            root: root.pos,
            ..SourceMap::default()
        };
        let (mut has_name, mut has_tasks) = (false, false);
        let mut batch_settings = None;
        let mut batch_type: Option<Option<Pos>> = None;
        let mut template = None;
        for (key, key_node, value) in self.entries(root) {
            match key.as_str() {
                "name" => {
                    has_name = true;
                    if let Some(name) = self.scalar_string("the workflow's `name`", value) {
                        spec.name = name;
                        source.fields.push(("name", value.pos));
                    }
                }
                "description" => {
                    spec.description = self.optional_string("the workflow's `description`", value);
                }
                "id" => {
                    if let Some(id) = self.scalar_string("the workflow's `id`", value) {
                        spec.id = Some(id);
                    }
                }
                "metadata" => match &value.value {
                    NodeValue::Null => {}
                    NodeValue::Map(_) => {
                        if let Some(json) = self.json(value) {
                            spec.metadata = json;
                        }
                    }
                    _ => self.wrong_type("`metadata`", "a mapping", value),
                },
                "tasks" => {
                    has_tasks = true;
                    match &value.value {
                        NodeValue::Seq(items) => {
                            source.fields.push(("tasks", value.pos));
                            for (index, item) in items.iter().enumerate() {
                                if let Some((task, task_source)) = self.task(item, index) {
                                    spec.tasks.push(task);
                                    source.tasks.push(task_source);
                                }
                            }
                        }
                        _ => self.wrong_type("`tasks`", "a list of tasks", value),
                    }
                }
                "timeout" => {
                    if let Some(seconds) = self.number("the workflow's `timeout`", value) {
                        spec.timeout = Some(seconds);
                        source.fields.push(("timeout", value.pos));
                    }
                }
                "on_failure" => {
                    if let Some(word) = self.scalar(Expect::Text, "`on_failure`", value) {
                        match word.as_str() {
                            "fail" => spec.on_failure = OnFailure::Fail,
                            "continue" => spec.on_failure = OnFailure::Continue,
                            _ => self.error(
                                format!("`on_failure` must be `fail` or `continue`, not `{word}`"),
                                value.pos,
                            ),
                        }
                    }
                }
                // Older files carry these; `version` is informational and the CLI always
                // waits for completion unless told otherwise.
                "version" => {
                    if !matches!(value.value, NodeValue::Null) && value.scalar_text().is_none() {
                        self.wrong_type("`version`", "a string or a number", value);
                    }
                }
                "wait_for_completion" => {
                    let _ = self.scalar(Expect::Bool, "`wait_for_completion`", value);
                }
                "batch" => match self.json(value).map(|v| batch::Batch::from_json(&v)) {
                    Some(Ok(b)) => batch_settings = Some((b, key_node.pos)),
                    Some(Err(message)) => self.error(message, value.pos),
                    None => {}
                },
                "type" => {
                    if let Some(t) = self.scalar(Expect::Text, "the workflow's `type`", value) {
                        if t == "batch" {
                            batch_type = Some(key_node.pos);
                        } else {
                            self.error(
                                format!("the workflow's `type` can only be `batch`, not `{t}`"),
                                value.pos,
                            );
                        }
                    }
                }
                "attachments" => {
                    if let Some(attachments) = self.typed(value, "`attachments`") {
                        spec.attachments = attachments;
                        source.fields.push(("attachments", value.pos));
                    }
                }
                "template" => {
                    if let Some((mut task, task_source)) = self.task(value, 0) {
                        if task.id.is_empty() {
                            task.id = "file".into();
                        }
                        template = Some((task, task_source, key_node.pos));
                    }
                }
                _ => {
                    self.unknown_key(&key, "the workflow", WORKFLOW_KEYS, key_node.pos);
                }
            }
        }
        match (batch_settings, template) {
            (Some((b, _)), Some((task, task_source, _))) => {
                spec.metadata["batch"] = b.to_json(&task.id);
                spec.tasks.insert(0, task);
                source.tasks.insert(0, task_source);
                has_tasks = true;
            }
            (Some((_, at)), None) => self.error(
                "a batch needs a `template:` task: what to do with each file",
                at,
            ),
            (None, Some((_, _, at))) => self.error(
                "`template:` belongs to a batch: add `batch: {directory: …, pattern: …}`",
                at,
            ),
            (None, None) => {
                if let Some(at) = batch_type {
                    self.error(
                        "`type: batch` needs `batch: {directory: …}` and a `template:` task",
                        at,
                    );
                }
            }
        }
        if !has_name {
            self.diagnostics.push(
                Diagnostic::error(codes::INVALID_FIELD, "the workflow has no `name`")
                    .with_hint("add `name: ...` at the top level")
                    .at(root.pos),
            );
        }
        if !has_tasks {
            self.diagnostics.push(
                Diagnostic::error(codes::INVALID_FIELD, "the workflow has no `tasks`")
                    .with_hint("add a `tasks:` list with at least one task")
                    .at(root.pos),
            );
        }
        Some((spec, source))
    }

    fn task(&mut self, node: &Node, index: usize) -> Option<(TaskSpec, TaskSource)> {
        let ordinal = index + 1;
        if !matches!(node.value, NodeValue::Map(_)) {
            self.wrong_type(&format!("task #{ordinal}"), "a mapping", node);
            return None;
        }
        let entries = self.entries(node);
        // Name the task in messages by its id when it has a readable one.
        let label = entries
            .iter()
            .find(|(k, _, _)| k == "id")
            .and_then(|(_, _, v)| v.scalar_text())
            .map_or_else(|| format!("task #{ordinal}"), |id| format!("task `{id}`"));
        let mut task = TaskSpec {
            id: String::new(),
            name: String::new(),
            method: String::new(),
            protocol: String::new(),
            parameters: Value::Object(Map::new()),
            dependencies: Vec::new(),
            priority: Priority::Normal,
            timeout: None,
            retry: RetryPolicy::default(),
            files: BTreeMap::new(),
            tolerate_failures: false,
            batch: None,
        };
        let mut source = TaskSource {
            at: node.pos,
            ..TaskSource::default()
        };
        let mut has_method = false;
        let mut params_key: Option<&str> = None;
        // The original's dialect (`type: text`, fields at the top level): see `dialect`.
        let kind_node = entries
            .iter()
            .find(|(k, _, _)| k == "type")
            .map(|(_, _, v)| *v);
        let mut kind = None;
        let mut dialect_fields = Map::new();
        for (key, key_node, value) in &entries {
            let what = format!("`{key}` of {label}");
            if kind_node.is_some() {
                let verb = key == "method" && value.scalar_text().is_some_and(|m| !m.contains('/'));
                if verb || (key != "type" && dialect::is_field(key)) {
                    let field = if verb { "http_method" } else { key.as_str() };
                    dialect_fields.insert(field.to_string(), self.json_value(value));
                    continue;
                }
            }
            match key.as_str() {
                "type" => {
                    let text = self.scalar(Expect::Text, &what, value);
                    kind = text.as_deref().and_then(dialect::Kind::parse);
                    if kind.is_none() {
                        if let Some(t) = text {
                            self.diagnostics.push(
                                Diagnostic::error(
                                    codes::INVALID_FIELD,
                                    format!("{label}: unknown task type `{t}`"),
                                )
                                .with_hint(format!(
                                    "types: {} (or give `method:` and `parameters:`)",
                                    dialect::KINDS.join(", ")
                                ))
                                .at(value.pos),
                            );
                        }
                        has_method = true; // reported once, not again as "no method"
                    }
                }
                "id" => {
                    if let Some(id) = self.scalar_string(&what, value) {
                        task.id = id;
                        source.fields.push(("id", value.pos));
                    }
                }
                "name" => {
                    if let Some(name) = self.scalar_string(&what, value) {
                        task.name = name;
                        source.fields.push(("name", value.pos));
                    }
                }
                "method" => {
                    has_method = true;
                    if let Some(method) = self.scalar(Expect::Text, &what, value) {
                        task.method = method;
                        source.fields.push(("method", value.pos));
                    }
                }
                "protocol" => {
                    if let Some(protocol) = self.scalar(Expect::Text, &what, value) {
                        task.protocol = protocol;
                        source.fields.push(("protocol", value.pos));
                    }
                }
                "parameters" | "params" => {
                    if let Some(first) = params_key {
                        self.diagnostics.push(
                            Diagnostic::error(
                                codes::INVALID_FIELD,
                                format!("{label} has both `{first}` and `{key}`"),
                            )
                            .with_hint("they mean the same; keep one")
                            .at(key_node.pos),
                        );
                        continue;
                    }
                    params_key = Some(if key == "params" {
                        "params"
                    } else {
                        "parameters"
                    });
                    match &value.value {
                        NodeValue::Null => {}
                        NodeValue::Map(_) => match self.json(value) {
                            Some(json) => {
                                task.parameters = json;
                                source.fields.push(("parameters", value.pos));
                                source.params = Some((*value).clone());
                            }
                            None => source.params_unreadable = true,
                        },
                        _ => {
                            self.wrong_type(&what, "a mapping", value);
                            source.params_unreadable = true;
                        }
                    }
                }
                "dependencies" => self.dependencies(&what, value, &mut task, &mut source),
                "priority" => {
                    if let Some(priority) = self.priority(&what, value) {
                        task.priority = priority;
                    }
                }
                "timeout" => {
                    if let Some(seconds) = self.number(&what, value) {
                        task.timeout = Some(seconds);
                        source.fields.push(("timeout", value.pos));
                    }
                }
                "retry" => task.retry = self.retry(&label, value, &mut source),
                "tolerate_failures" => {
                    if let Some(flag) = self.scalar(Expect::Bool, &what, value) {
                        task.tolerate_failures = flag == "true";
                    }
                }
                "batch" => match self.json(value).map(|v| FanOut::from_json(&v)) {
                    Some(Ok(fan)) => {
                        task.batch = Some(fan);
                        source.fields.push(("batch", value.pos));
                    }
                    Some(Err(message)) => self.error(message, value.pos),
                    None => {}
                },
                "files" => {
                    if let Some(files) = self.typed(value, &what) {
                        task.files = files;
                        source.fields.push(("files", value.pos));
                    }
                }
                _ => {
                    let meant = self.unknown_key(key, &label, TASK_KEYS, key_node.pos);
                    if matches!(meant, Some("parameters" | "params")) {
                        source.params_unreadable = true;
                    }
                }
            }
        }
        if let Some(kind) = kind {
            if has_method {
                self.diagnostics.push(
                    Diagnostic::error(
                        codes::INVALID_FIELD,
                        format!("{label} has both `type` and `method`"),
                    )
                    .with_hint(format!(
                        "`type: {}` means `method: {}`; keep one",
                        kind_node.and_then(Node::scalar_text).unwrap_or_default(),
                        kind.method()
                    ))
                    .at(kind_node.and_then(|n| n.pos)),
                );
            } else {
                has_method = true;
                task.method = kind.method().to_string();
                source
                    .fields
                    .push(("method", kind_node.and_then(|n| n.pos)));
                match dialect::parameters(kind, dialect_fields, &task.parameters) {
                    Ok(params) => task.parameters = params,
                    Err(key) => self.diagnostics.push(
                        Diagnostic::error(
                            codes::INVALID_FIELD,
                            format!(
                                "{label} gives `{key}` both as a task field and in its parameters"
                            ),
                        )
                        .with_hint("keep one")
                        .at(node.pos),
                    ),
                }
            }
        }
        if !has_method {
            self.diagnostics.push(
                Diagnostic::error(codes::INVALID_FIELD, format!("{label} has no `method`"))
                    .with_hint("add e.g. `method: llm/chat` or `method: python/execute` (or `type: text`, `type: function`, …)")
                    .at(node.pos),
            );
        }
        Some((task, source))
    }

    fn dependencies(
        &mut self,
        what: &str,
        value: &Node,
        task: &mut TaskSpec,
        source: &mut TaskSource,
    ) {
        let items: &[Node] = match &value.value {
            NodeValue::Null => return,
            NodeValue::Seq(items) => items,
            // A single dependency written without a list.
            NodeValue::Str(_) => std::slice::from_ref(value),
            _ => {
                self.wrong_type(what, "a list of task ids or names", value);
                return;
            }
        };
        source.fields.push(("dependencies", value.pos));
        for item in items {
            let entry = format!("an entry of {what}");
            if let Some(dependency) = self.scalar_string(&entry, item) {
                task.dependencies.push(dependency);
                source.dependencies.push(item.pos);
            }
        }
    }

    fn priority(&mut self, what: &str, value: &Node) -> Option<Priority> {
        match &value.value {
            NodeValue::Str(word) => {
                let priority = Priority::from_word(word);
                if priority.is_none() {
                    self.diagnostics.push(
                        Diagnostic::error(
                            codes::INVALID_FIELD,
                            format!("{what} must be low, normal, high or urgent, not `{word}`"),
                        )
                        .with_hint("or an integer: 1 = low, 2 = normal, 3 = high, 4 = urgent")
                        .at(value.pos),
                    );
                }
                priority
            }
            NodeValue::Int(level) => Some(self.priority_level(what, *level, value.pos)),
            NodeValue::UInt(_) => Some(self.priority_level(what, i64::MAX, value.pos)),
            _ => {
                self.wrong_type(what, "low, normal, high, urgent or an integer 1-4", value);
                None
            }
        }
    }

    fn priority_level(&mut self, what: &str, level: i64, pos: Option<Pos>) -> Priority {
        let (priority, in_range) = Priority::from_level(level);
        if !in_range {
            self.diagnostics.push(
                Diagnostic::warning(
                    codes::INVALID_FIELD,
                    format!(
                        "{what} {level} is outside 1-4; read as {}",
                        priority.as_str()
                    ),
                )
                .with_hint("larger is more urgent: 1 = low, 2 = normal, 3 = high, 4 = urgent")
                .at(pos),
            );
        }
        priority
    }

    fn retry(&mut self, label: &str, value: &Node, source: &mut TaskSource) -> RetryPolicy {
        let mut retry = RetryPolicy::retry_block_default();
        match &value.value {
            NodeValue::Null => return retry,
            // `retry: 3` is short for `retry: {max_attempts: 3}`.
            NodeValue::Int(_) | NodeValue::UInt(_) => {
                if let Some(n) = self.attempts(&format!("`retry` of {label}"), value) {
                    retry.max_attempts = n;
                    source.fields.push(("retry.max_attempts", value.pos));
                }
                return retry;
            }
            NodeValue::Map(_) => {}
            _ => {
                self.wrong_type(
                    &format!("`retry` of {label}"),
                    "a mapping (max_attempts, backoff, base_delay, max_delay, jitter)",
                    value,
                );
                return retry;
            }
        }
        let context = format!("the `retry` of {label}");
        for (key, key_node, item) in self.entries(value) {
            let what = format!("`retry.{key}` of {label}");
            match key.as_str() {
                "max_attempts" => {
                    if let Some(n) = self.attempts(&what, item) {
                        retry.max_attempts = n;
                        source.fields.push(("retry.max_attempts", item.pos));
                    }
                }
                "backoff" => {
                    if let Some(word) = self.scalar(Expect::Text, &what, item) {
                        match Backoff::from_word(&word) {
                            Some(backoff) => retry.backoff = backoff,
                            None => self.error(
                                format!(
                                    "{what} must be exponential, linear or fixed, not `{word}`"
                                ),
                                item.pos,
                            ),
                        }
                    }
                }
                "base_delay" => {
                    if let Some(seconds) = self.number(&what, item) {
                        retry.base_delay = seconds;
                        source.fields.push(("retry.base_delay", item.pos));
                    }
                }
                "max_delay" => {
                    if let Some(seconds) = self.number(&what, item) {
                        retry.max_delay = seconds;
                        source.fields.push(("retry.max_delay", item.pos));
                    }
                }
                "jitter" => {
                    if let Some(flag) = self.scalar(Expect::Bool, &what, item) {
                        retry.jitter = flag == "true";
                    }
                }
                _ => {
                    self.unknown_key(&key, &context, RETRY_KEYS, key_node.pos);
                }
            }
        }
        retry
    }

    fn attempts(&mut self, what: &str, value: &Node) -> Option<u32> {
        match &value.value {
            NodeValue::Int(n) => match u32::try_from(*n) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.out_of_range(format!("{what} must be from 1 to 10, not {n}"), value.pos);
                    None
                }
            },
            NodeValue::UInt(n) => {
                self.out_of_range(format!("{what} must be from 1 to 10, not {n}"), value.pos);
                None
            }
            _ => {
                self.wrong_type(what, "a whole number from 1 to 10", value);
                None
            }
        }
    }

    /// A string; numbers are accepted and written as text (ids such as `1`).
    fn scalar_string(&mut self, what: &str, value: &Node) -> Option<String> {
        match &value.value {
            NodeValue::Str(s) => Some(s.clone()),
            NodeValue::Int(_) | NodeValue::UInt(_) => value.scalar_text(),
            _ => {
                self.wrong_type(what, "a string", value);
                None
            }
        }
    }

    fn optional_string(&mut self, what: &str, value: &Node) -> Option<String> {
        match &value.value {
            NodeValue::Null => None,
            _ => self.scalar_string(what, value),
        }
    }

    /// A number as read (NaN, infinite and huge values included: the range checks in
    /// [`crate::limits`] refuse them with GZ7011 and their position).
    fn number(&mut self, what: &str, value: &Node) -> Option<f64> {
        match &value.value {
            NodeValue::Int(i) => Some(*i as f64),
            NodeValue::UInt(u) => Some(*u as f64),
            NodeValue::Float(f) => Some(*f),
            _ => self.scalar(Expect::Number, what, value).and(None),
        }
    }

    /// A scalar of the expected kind, as text.
    fn scalar(&mut self, expect: Expect, what: &str, value: &Node) -> Option<String> {
        let fits = match (&expect, &value.value) {
            (Expect::Text, NodeValue::Str(_)) | (Expect::Bool, NodeValue::Bool(_)) => true,
            (Expect::Number, v) => {
                matches!(
                    v,
                    NodeValue::Int(_) | NodeValue::UInt(_) | NodeValue::Float(_)
                )
            }
            _ => false,
        };
        if fits {
            return value.scalar_text();
        }
        let expected = match expect {
            Expect::Text => "a string",
            Expect::Number => "a number",
            Expect::Bool => "true or false",
        };
        self.wrong_type(what, expected, value);
        None
    }

    /// A subtree read as `T` through JSON; a value of the wrong shape is reported at its
    /// position (`what` names it).
    fn typed<T: serde::de::DeserializeOwned>(&mut self, value: &Node, what: &str) -> Option<T> {
        let json = self.json(value)?;
        match serde_json::from_value(json) {
            Ok(typed) => Some(typed),
            Err(e) => {
                self.error(format!("{what} cannot be read: {e}"), value.pos);
                None
            }
        }
    }

    /// Converts a YAML subtree to JSON, reporting what JSON cannot hold.
    fn json(&mut self, node: &Node) -> Option<Value> {
        let errors_before = self.diagnostics.len();
        let value = self.json_value(node);
        (self.diagnostics.len() == errors_before).then_some(value)
    }

    fn json_value(&mut self, node: &Node) -> Value {
        match &node.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::Number(Number::from(*i)),
            NodeValue::UInt(u) => Value::Number(Number::from(*u)),
            NodeValue::Float(f) => match Number::from_f64(*f) {
                Some(n) => Value::Number(n),
                None => {
                    self.error(
                        format!("{f} cannot be passed on: JSON has no infinite or NaN numbers"),
                        node.pos,
                    );
                    Value::Null
                }
            },
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => {
                Value::Array(items.iter().map(|i| self.json_value(i)).collect())
            }
            NodeValue::Map(_) => {
                let mut map = Map::new();
                for (key, _, value) in self.entries(node) {
                    let value = self.json_value(value);
                    map.insert(key, value);
                }
                Value::Object(map)
            }
        }
    }
}
