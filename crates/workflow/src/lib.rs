//! gleitzeit-workflow: the workflow model of Gleitzeit, with no I/O and no async.
//!
//! - [`parse_workflow`] reads a workflow YAML file (every dialect of the original) and
//!   reports every mistake it finds as a [`Diagnostic`] with line and column.
//! - [`validate_spec`] and [`prepare_spec`] do the same checks on a [`WorkflowSpec`] that
//!   arrived as JSON.
//! - [`Dag`], [`topological_order`] and [`find_cycle`] work on the dependency graph in
//!   O(tasks + dependencies), for schedulers of 100,000-task workflows.
//! - [`substitute`] and [`references`] implement `${task.path}` result substitution.
//! - [`MethodCatalog`] knows the methods (from `protocols/*.yaml`) and their JSON Schemas.
//! - [`attachments`] is how the files tasks name travel with a workflow (content by digest).
//!
//! ```
//! use gleitzeit_workflow::{parse_workflow, MethodCatalog};
//!
//! let yaml = r#"
//! name: hello
//! tasks:
//!   - id: ask
//!     method: llm/generate
//!     params: { model: "llama3.2:latest", prompt: "Name a colour" }
//!   - id: shout
//!     method: python/execute
//!     parameters:
//!       code: "result = context['c'].upper()"
//!       context: { c: "${ask.response}" }
//! "#;
//! let parsed = parse_workflow(yaml, &MethodCatalog::builtin()).expect("valid workflow");
//! assert_eq!(parsed.spec.tasks[1].dependencies, vec!["ask".to_string()]);
//! ```

#![forbid(unsafe_code)]

pub mod attachments;
pub mod batch;
pub mod catalog;
pub mod codes;
pub mod dag;
pub mod diagnostic;
mod dialect;
pub mod fanout;
pub mod functions;
pub mod limits;
pub mod parse;
pub mod positions;
pub mod spec;
pub mod substitute;
pub mod text_parameters;
pub mod validate;
mod yaml;

pub use attachments::{Attachment, FileRef};
pub use catalog::{CatalogError, MethodCatalog, MethodSpec, ParamIssue, ProtocolInfo};
pub use dag::{find_cycle, topological_order, Cycle, Dag};
pub use diagnostic::{Diagnostic, Severity};
pub use dialect::DEFAULT_TEXT_MODEL;
pub use functions::{builtin_functions, FunctionCatalog, FunctionSpec};
pub use limits::{first_range_issue, RangeIssue, DEFAULT_MAX_SPEC_BYTES, DEFAULT_MAX_TASKS};
pub use parse::parse_workflow;
pub use spec::{Backoff, OnFailure, Priority, RetryPolicy, TaskSpec, WorkflowSpec};
pub use substitute::{
    needs_substitution, references, resolve_path, substitute, substitute_item, PathSeg, Reference,
    SubstitutionError,
};
pub use validate::{prepare_spec, prepare_spec_with_text_parameters, validate_spec, Parsed};
