//! Error codes used by this crate's diagnostics.
//!
//! The codes follow the original's `GZnnnn` scheme (3xxx workflow, 7xxx validation). They are
//! plain strings so that other crates (and clients in other languages) can match on them;
//! the full catalog with user messages and resolution hints lives in `gleitzeit-protocol`.

/// A workflow is invalid: duplicate task ids, unknown or self dependencies.
pub const VALIDATION_FAILED: &str = "GZ3001";
/// The tasks' dependencies form a cycle; the message shows the path, e.g. `a -> b -> a`.
pub const CIRCULAR_DEPENDENCY: &str = "GZ3003";
/// A `${task.path}` or `{{Task.result}}` reference is malformed or cannot be resolved.
pub const SUBSTITUTION_FAILED: &str = "GZ3013";
/// An unknown key, a value of the wrong type or range, or a missing required field.
pub const INVALID_FIELD: &str = "GZ7001";
/// A task's parameters violate its method's JSON Schema; the message names the JSON pointer.
pub const SCHEMA_VIOLATION: &str = "GZ7002";
/// A task names a method that the method catalog does not know.
pub const UNKNOWN_METHOD: &str = "GZ7003";
/// The text is not valid YAML (or not a single YAML document).
pub const YAML_PARSE_ERROR: &str = "GZ7010";
/// A number that becomes a duration or a count is outside its documented range
/// ([`crate::limits`]): NaN, infinite, negative, zero where that means nothing, or huge.
pub const OUT_OF_RANGE: &str = "GZ7011";
/// A workflow larger than a limit (tasks, bytes).
pub const TOO_LARGE: &str = "GZ7012";
/// A file that travels with the workflow is too large, or all of them together are
/// ([`crate::attachments`]).
pub const ATTACHMENT_TOO_LARGE: &str = "GZ7013";
