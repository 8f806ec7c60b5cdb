//! The records of workflows and tasks as the store keeps them and the queue-manager's
//! replies carry them (`workflow_get`, `workflow_list`, `task_get`). Times are milliseconds
//! since the Unix epoch.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::status::{TaskStatus, WorkflowStatus};

/// JSON kept as text, or null: a workflow spec (to the store, to the resolver, into replies),
/// a task's parameters and result (from the resolver and the provider to the store, the
/// engines, the resolver and the watchers) or a large payload (`Envelope::raw`), passed on
/// as it is without being parsed into a tree of values.
#[derive(Clone, Default)]
pub struct JsonText(Option<Box<RawValue>>);

impl JsonText {
    /// Nothing (`null`).
    pub fn null() -> Self {
        JsonText(None)
    }

    /// Whether it is `null`.
    pub fn is_null(&self) -> bool {
        self.0.is_none()
    }

    /// `value` written as JSON; `null` becomes [`JsonText::null`].
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        let raw = serde_json::value::to_raw_value(value)?;
        Ok(JsonText((raw.get() != "null").then_some(raw)))
    }

    /// A JSON value written as text (a [`Value`] always writes: its keys are strings).
    pub fn of_value(value: &Value) -> Self {
        Self::of(value).unwrap_or_default()
    }

    /// Text already checked to be JSON; `null` becomes [`JsonText::null`].
    pub fn from_raw(raw: Box<RawValue>) -> Self {
        JsonText((raw.get() != "null").then_some(raw))
    }

    /// JSON text (checked here); `null` becomes [`JsonText::null`].
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        let raw = RawValue::from_string(text)?;
        Ok(JsonText((raw.get() != "null").then_some(raw)))
    }

    /// Its JSON text (`None` when null).
    pub fn text(&self) -> Option<&str> {
        self.0.as_deref().map(RawValue::get)
    }

    /// Its length as JSON text (4 for null).
    pub fn len(&self) -> usize {
        self.text().map_or(4, str::len)
    }

    /// Always false: even nothing is the four bytes `null` (see [`JsonText::is_null`]).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Parsed into `T` straight from the text (no intermediate tree of values).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.text().unwrap_or("null"))
    }

    /// Parsed into a JSON value (`Value::Null` when null).
    pub fn to_value(&self) -> Value {
        self.parse().unwrap_or(Value::Null)
    }
}

impl PartialEq for JsonText {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

impl std::fmt::Debug for JsonText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.text() {
            Some(t) if t.len() > 200 => write!(f, "JsonText({} bytes)", t.len()),
            Some(t) => write!(f, "JsonText({t})"),
            None => f.write_str("JsonText(null)"),
        }
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Option::<Box<RawValue>>::deserialize(deserializer)?;
        Ok(JsonText(raw.filter(|r| r.get() != "null")))
    }
}

/// Any JSON (the spec's own schema is `WorkflowSpec`'s).
impl JsonSchema for JsonText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonText".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "any JSON (kept as text by the services that pass it on)"
        })
    }
}

/// One stored workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkflowRecord {
    /// Unique workflow id.
    pub id: String,
    /// Human-readable name from the spec.
    pub name: String,
    /// Current status.
    pub status: WorkflowStatus,
    /// The validated workflow spec as JSON text (can be megabytes for 100,000 tasks: kept
    /// as text, a tenth of what the parsed tree takes).
    ///
    /// `Store::list_workflows` returns [`JsonText::null`] here;
    /// `Store::apply` keeps the stored spec when given [`JsonText::null`].
    #[serde(default)]
    pub spec: JsonText,
    /// Directory that relative paths in the spec are resolved against.
    pub base_dir: Option<String>,
    /// Number of tasks in the workflow.
    pub total_tasks: u64,
    /// When the workflow was submitted (ms since epoch).
    pub created_at: u64,
    /// When its first task was scheduled (ms since epoch).
    pub started_at: Option<u64>,
    /// When it reached a terminal status (ms since epoch).
    pub finished_at: Option<u64>,
    /// Why it failed, as a structured error.
    pub error: Option<serde_json::Value>,
    /// The user who submitted it (as the hub authenticated them); `None` for workflows
    /// stored before identities existed.
    #[serde(default)]
    pub owner: Option<String>,
}

// Its strings are shared (`Arc<str>`): a queue-manager holds a record per task for a
// workflow's whole run (a million of them for `gz bench --big 1000000`), so the records of
// one workflow share its id, a method, and a name that is the task's id, and a copy of a
// record (each change a step proposes) copies no text.
/// One stored task of a workflow, identified by `(workflow_id, task_id)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskRecord {
    /// The workflow the task belongs to.
    pub workflow_id: Arc<str>,
    /// Task id, unique within its workflow.
    pub task_id: Arc<str>,
    /// Human-readable name.
    pub name: Arc<str>,
    /// Method to call, e.g. `llm/generate`.
    pub method: Arc<str>,
    /// Current status.
    pub status: TaskStatus,
    /// Scheduling priority (higher runs first).
    pub priority: i32,
    /// Attempts made so far.
    pub attempts: u32,
    /// Parameters after `${...}` substitution, once resolved (JSON text: stored and handed
    /// out as it is).
    pub params: Option<JsonText>,
    /// The provider's result, once completed (JSON text: stored and passed on as it is).
    pub result: Option<JsonText>,
    /// The last error, if any attempt failed.
    pub error: Option<serde_json::Value>,
    /// The provider that ran (or runs) the task.
    pub provider_id: Option<Arc<str>>,
    /// When it was queued (ms since epoch).
    pub queued_at: Option<u64>,
    /// When its current or last attempt started (ms since epoch).
    pub started_at: Option<u64>,
    /// When it reached a terminal status (ms since epoch).
    pub finished_at: Option<u64>,
}

impl TaskRecord {
    /// The key this task is queued and leased by (`crate::routing::route_key`).
    pub fn route(&self) -> std::borrow::Cow<'_, str> {
        crate::routing::route_key_text(&self.method, self.params.as_ref())
    }

    /// Its parameters parsed (`None` before they are resolved).
    pub fn params_value(&self) -> Option<Value> {
        self.params.as_ref().map(JsonText::to_value)
    }

    /// Its result parsed (`None` unless it completed).
    pub fn result_value(&self) -> Option<Value> {
        self.result.as_ref().map(JsonText::to_value)
    }

    /// A new task as a submission creates it: pending, never attempted.
    pub fn pending(
        workflow_id: impl Into<Arc<str>>,
        task_id: impl Into<Arc<str>>,
        name: impl Into<Arc<str>>,
        method: impl Into<Arc<str>>,
        priority: i32,
    ) -> Self {
        TaskRecord {
            workflow_id: workflow_id.into(),
            task_id: task_id.into(),
            name: name.into(),
            method: method.into(),
            status: TaskStatus::Pending,
            priority,
            attempts: 0,
            params: None,
            result: None,
            error: None,
            provider_id: None,
            queued_at: None,
            started_at: None,
            finished_at: None,
        }
    }
}

/// What a store is and whether it answers, for status pages and health checks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StoreInfo {
    /// Backend kind, e.g. `"sqlite"`.
    pub kind: String,
    /// Where the data lives: a file path, `":memory:"`, or a server address.
    pub location: String,
    /// Whether a trivial query succeeded just now.
    pub healthy: bool,
}
