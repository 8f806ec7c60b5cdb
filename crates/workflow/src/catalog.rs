//! The method catalog: which methods exist and what parameters each accepts.
//!
//! Methods are described in YAML files under `protocols/` (one per protocol) with a JSON
//! Schema for their parameters and one for their result. The built-in catalog is compiled
//! from `protocols/python.yaml`, `protocols/llm.yaml` and `protocols/http.yaml`; each schema
//! is compiled once.
//!
//! Parameters may hold `${task.path}` references whose values are only known at run time,
//! so [`MethodSpec::check_params`] does not hold them to the schema: a string that is exactly
//! one reference may turn into any type, and the errors at its place (and the combinator
//! errors, such as `anyOf`, of the objects around it) are dropped. A string with a reference
//! embedded in text stays a string, so only its `type` is checked. Check again after
//! substitution to hold the real values to the schema.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use jsonschema::error::ValidationErrorKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::diagnostic::{did_you_mean, list_for_hint};
use crate::substitute::for_each_reference;

const PYTHON_PROTOCOL: &str = include_str!("../../../protocols/python.yaml");
const LLM_PROTOCOL: &str = include_str!("../../../protocols/llm.yaml");
const HTTP_PROTOCOL: &str = include_str!("../../../protocols/http.yaml");

/// One method: its name, protocol, and the JSON Schemas of its parameters and result.
#[derive(Debug, Clone, Serialize)]
pub struct MethodSpec {
    /// Canonical name, e.g. `llm/generate`.
    pub name: String,
    /// Protocol it belongs to, e.g. `llm/v1`.
    pub protocol: String,
    pub description: Option<String>,
    /// Other names the method answers to, e.g. `llm/complete`.
    pub aliases: Vec<String>,
    pub params_schema: Value,
    pub result_schema: Option<Value>,
    #[serde(skip)]
    validator: Arc<jsonschema::Validator>,
}

/// A parameter that does not fit a method's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamIssue {
    /// JSON pointer (RFC 6901) of the offending value within the parameters; `""` is the
    /// parameters object itself.
    pub pointer: String,
    pub message: String,
    pub hint: Option<String>,
}

/// Why a protocol file could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("protocol file is not valid: {0}")]
    Invalid(String),
    #[error("method `{method}` has an invalid params_schema: {message}")]
    Schema { method: String, message: String },
    #[error("method `{0}` is defined twice")]
    Duplicate(String),
    #[error("method `{method}` does not belong to protocol `{protocol}` (its name must start with `{prefix}/`)")]
    WrongProtocol {
        method: String,
        protocol: String,
        prefix: String,
    },
}

/// A protocol whose methods are in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolInfo {
    /// e.g. `llm/v1`
    pub name: String,
    pub description: Option<String>,
}

/// All known methods, by name and alias.
#[derive(Debug, Clone, Default)]
pub struct MethodCatalog {
    protocols: Vec<ProtocolInfo>,
    methods: Vec<Arc<MethodSpec>>,
    by_name: HashMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProtocolFile {
    protocol: String,
    #[serde(default)]
    description: Option<String>,
    methods: BTreeMap<String, MethodFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MethodFile {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    params_schema: Value,
    #[serde(default)]
    result_schema: Option<Value>,
}

impl MethodCatalog {
    /// The methods of the protocol files shipped with Gleitzeit (`python/v1`, `llm/v1`,
    /// `http/v1`).
    ///
    /// # Panics
    ///
    /// Never in a released build: the files are compiled in and a unit test loads them.
    pub fn builtin() -> MethodCatalog {
        let mut catalog = MethodCatalog::default();
        for text in [PYTHON_PROTOCOL, LLM_PROTOCOL, HTTP_PROTOCOL] {
            if let Err(err) = catalog.add_yaml_str(text) {
                panic!("a built-in protocol file is invalid: {err}");
            }
        }
        catalog
    }

    /// A catalog of the methods in one protocol file.
    ///
    /// # Errors
    ///
    /// The file is not valid YAML of the expected shape, a schema does not compile, or a
    /// method is defined twice.
    pub fn from_yaml_str(text: &str) -> Result<MethodCatalog, CatalogError> {
        let mut catalog = MethodCatalog::default();
        catalog.add_yaml_str(text)?;
        Ok(catalog)
    }

    /// Adds the methods of one more protocol file.
    ///
    /// # Errors
    ///
    /// As [`MethodCatalog::from_yaml_str`]; on error the catalog is unchanged.
    pub fn add_yaml_str(&mut self, text: &str) -> Result<(), CatalogError> {
        let file: ProtocolFile =
            serde_saphyr::from_str(text).map_err(|err| CatalogError::Invalid(err.to_string()))?;
        let prefix = file
            .protocol
            .split('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut specs = Vec::with_capacity(file.methods.len());
        for (name, method) in file.methods {
            if name.split('/').next() != Some(prefix.as_str()) {
                return Err(CatalogError::WrongProtocol {
                    method: name,
                    protocol: file.protocol,
                    prefix,
                });
            }
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .build(&method.params_schema)
                .map_err(|err| CatalogError::Schema {
                    method: name.clone(),
                    message: err.to_string(),
                })?;
            specs.push(MethodSpec {
                name,
                protocol: file.protocol.clone(),
                description: method.description,
                aliases: method.aliases,
                params_schema: method.params_schema,
                result_schema: method.result_schema,
                validator: Arc::new(validator),
            });
        }
        for spec in &specs {
            for name in std::iter::once(&spec.name).chain(&spec.aliases) {
                let taken_here = specs
                    .iter()
                    .filter(|s| s.name == *name || s.aliases.contains(name))
                    .count()
                    > 1;
                if self.by_name.contains_key(name) || taken_here {
                    return Err(CatalogError::Duplicate(name.clone()));
                }
            }
        }
        self.protocols.push(ProtocolInfo {
            name: file.protocol,
            description: file.description,
        });
        for spec in specs {
            let index = self.methods.len();
            for name in std::iter::once(&spec.name).chain(&spec.aliases) {
                self.by_name.insert(name.clone(), index);
            }
            self.methods.push(Arc::new(spec));
        }
        Ok(())
    }

    /// The method with this name or alias.
    pub fn method(&self, name: &str) -> Option<&MethodSpec> {
        self.by_name.get(name).map(|&i| self.methods[i].as_ref())
    }

    /// Every name a task may use (canonical names and aliases), sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The protocols whose files were loaded, in order.
    pub fn protocols(&self) -> &[ProtocolInfo] {
        &self.protocols
    }

    /// The methods, each once, in the order they were added.
    pub fn methods(&self) -> impl Iterator<Item = &MethodSpec> {
        self.methods.iter().map(Arc::as_ref)
    }

    /// `(JSON pointer, message)` for every way `params` violates the method's schema; an
    /// unknown method yields one entry at `""`. See [`MethodCatalog::check_params`].
    pub fn validate_params(&self, method: &str, params: &Value) -> Vec<(String, String)> {
        self.check_params(method, params)
            .into_iter()
            .map(|issue| (issue.pointer, issue.message))
            .collect()
    }

    /// Like [`MethodCatalog::validate_params`], with hints.
    pub fn check_params(&self, method: &str, params: &Value) -> Vec<ParamIssue> {
        match self.method(method) {
            Some(spec) => spec.check_params(params),
            None => vec![ParamIssue {
                pointer: String::new(),
                message: format!("unknown method `{method}`"),
                hint: Some(format!(
                    "known methods: {}",
                    list_for_hint(self.names().into_iter())
                )),
            }],
        }
    }
}

impl MethodSpec {
    /// A spec of its own for one parameter schema (a function's keyword arguments, see
    /// `crate::functions`), checked like a method's.
    pub(crate) fn for_schema(name: &str, schema: Value) -> Result<MethodSpec, CatalogError> {
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&schema)
            .map_err(|err| CatalogError::Schema {
                method: name.to_string(),
                message: err.to_string(),
            })?;
        Ok(MethodSpec {
            name: name.to_string(),
            protocol: String::new(),
            description: None,
            aliases: Vec::new(),
            params_schema: schema,
            result_schema: None,
            validator: Arc::new(validator),
        })
    }

    /// Every way `params` violates this method's parameter schema, leaving out what
    /// `${...}` references may still change (see the module docs).
    pub fn check_params(&self, params: &Value) -> Vec<ParamIssue> {
        if self.validator.is_valid(params) {
            return Vec::new();
        }
        let dynamic = dynamic_strings(params);
        let mut issues = Vec::new();
        for error in self.validator.iter_errors(params) {
            let pointer = error.instance_path().as_str();
            let keyword = error.kind().keyword();
            if changed_by_reference(&dynamic, pointer, keyword) {
                continue;
            }
            let schema_parent = parent_pointer(error.schema_path().as_str());
            let schema_here = self.params_schema.pointer(schema_parent);
            if let ValidationErrorKind::AdditionalProperties { unexpected } = error.kind() {
                let allowed: Vec<&str> = schema_here
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                for name in unexpected {
                    let mut child = pointer.to_string();
                    child.push('/');
                    child.push_str(&name.replace('~', "~0").replace('/', "~1"));
                    let hint = match did_you_mean(name, allowed.iter().copied()) {
                        Some(close) => format!("did you mean `{close}`?"),
                        None => format!("allowed: {}", list_for_hint(allowed.iter().copied())),
                    };
                    issues.push(ParamIssue {
                        pointer: child,
                        message: format!("unknown parameter `{name}`"),
                        hint: Some(hint),
                    });
                }
                continue;
            }
            let custom = schema_here
                .and_then(|s| s.get("errorMessage"))
                .and_then(|m| m.get(keyword))
                .and_then(Value::as_str);
            let message = match custom {
                Some(text) => text.to_string(),
                None if is_short(error.instance()) => error.to_string(),
                None => error.masked().to_string(),
            };
            issues.push(ParamIssue {
                pointer: pointer.to_string(),
                message,
                hint: None,
            });
        }
        issues
    }
}

/// Pointers of strings holding references; `true` when the string is exactly one reference.
fn dynamic_strings(params: &Value) -> Vec<(String, bool)> {
    let mut found: Vec<(String, bool)> = Vec::new();
    for_each_reference(params, &mut |pointer, _raw, _parsed, exact| {
        if found.last().map(|(p, _)| p.as_str()) != Some(pointer) {
            found.push((pointer.to_string(), exact));
        }
    });
    found
}

/// Keywords whose verdict on an object or list depends on the values inside it.
const COMBINATORS: &[&str] = &[
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "dependentSchemas",
    "unevaluatedItems",
    "unevaluatedProperties",
];

fn changed_by_reference(dynamic: &[(String, bool)], pointer: &str, keyword: &str) -> bool {
    dynamic.iter().any(|(at, exact)| {
        if at == pointer {
            *exact || keyword != "type"
        } else {
            is_ancestor(pointer, at) && COMBINATORS.contains(&keyword)
        }
    })
}

fn is_ancestor(ancestor: &str, pointer: &str) -> bool {
    pointer.len() > ancestor.len()
        && pointer.starts_with(ancestor)
        && pointer.as_bytes()[ancestor.len()] == b'/'
}

fn parent_pointer(pointer: &str) -> &str {
    pointer.rfind('/').map_or("", |i| &pointer[..i])
}

/// Whether a value is small enough to quote in a message.
fn is_short(value: &Value) -> bool {
    match value {
        Value::String(s) => s.chars().count() <= 60,
        Value::Array(_) | Value::Object(_) => false,
        Value::Null | Value::Bool(_) | Value::Number(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn builtin_catalog_loads_with_aliases() {
        let catalog = MethodCatalog::builtin();
        for name in [
            "python/execute",
            "python/function",
            "llm/chat",
            "llm/generate",
            "llm/complete",
            "llm/vision",
            "llm/embed",
            "http/request",
        ] {
            assert!(catalog.method(name).is_some(), "{name} missing");
        }
        assert_eq!(catalog.method("llm/complete").unwrap().name, "llm/generate");
        assert_eq!(catalog.method("llm/chat").unwrap().protocol, "llm/v1");
        assert_eq!(catalog.methods().count(), 7);
        let protocols: Vec<&str> = catalog
            .protocols()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(protocols, vec!["python/v1", "llm/v1", "http/v1"]);
        assert!(catalog
            .method("llm/vision")
            .unwrap()
            .result_schema
            .is_some());
    }

    #[test]
    fn python_needs_exactly_one_of_file_or_code() {
        let catalog = MethodCatalog::builtin();
        assert!(catalog
            .validate_params("python/execute", &json!({"code": "result = 1"}))
            .is_empty());
        let both = catalog.check_params("python/execute", &json!({"code": "x", "file": "a.py"}));
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(both[0].message.contains("exactly one"), "{both:?}");
        let neither = catalog.check_params("python/execute", &json!({"context": {}}));
        assert_eq!(neither[0].pointer, "");
    }

    #[test]
    fn http_requests_take_json_or_body_and_name_secrets_by_variable() {
        let catalog = MethodCatalog::builtin();
        let ok = json!({"url": "https://api.example.com/v1", "method": "POST", "json": {"a": 1},
            "secret_headers": {"Authorization": "Bearer API_TOKEN"}, "expected_status": [200, 201]});
        assert!(catalog.check_params("http/request", &ok).is_empty());
        let both = catalog.check_params(
            "http/request",
            &json!({"url": "http://h/x", "json": {}, "body": "b"}),
        );
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(both[0].message.contains("not both"), "{both:?}");
        let not_http = catalog.check_params("http/request", &json!({"url": "file:///etc/passwd"}));
        assert_eq!(not_http[0].pointer, "/url", "{not_http:?}");
        let secret_value = catalog.check_params(
            "http/request",
            &json!({"url": "http://h/x", "secret_headers": {"X-Key": "abc-123"}}),
        );
        assert_eq!(
            secret_value[0].pointer, "/secret_headers/X-Key",
            "{secret_value:?}"
        );
        let status = catalog.check_params(
            "http/request",
            &json!({"url": "http://h/x", "expected_status": 999}),
        );
        assert!(status[0].message.contains("100 to 599"), "{status:?}");
    }

    #[test]
    fn unknown_parameters_point_at_the_key_and_suggest() {
        let catalog = MethodCatalog::builtin();
        let issues = catalog.check_params(
            "llm/chat",
            &json!({"modle": "m", "model": "m", "messages": [{"role": "user", "content": "x", "imgs": []}]}),
        );
        let pointers: Vec<&str> = issues.iter().map(|i| i.pointer.as_str()).collect();
        assert!(pointers.contains(&"/modle"), "{issues:?}");
        assert!(pointers.contains(&"/messages/0/imgs"), "{issues:?}");
        let modle = issues.iter().find(|i| i.pointer == "/modle").unwrap();
        assert_eq!(modle.hint.as_deref(), Some("did you mean `model`?"));
    }

    #[test]
    fn type_errors_carry_pointers() {
        let catalog = MethodCatalog::builtin();
        let issues = catalog.validate_params(
            "llm/chat",
            &json!({"model": "m", "temperature": 3, "max_tokens": "many",
                    "messages": [{"role": "robot", "content": "x"}]}),
        );
        let pointers: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
        assert!(pointers.contains(&"/temperature"), "{issues:?}");
        assert!(pointers.contains(&"/max_tokens"), "{issues:?}");
        assert!(pointers.contains(&"/messages/0/role"), "{issues:?}");
    }

    #[test]
    fn references_are_not_held_to_the_schema() {
        let catalog = MethodCatalog::builtin();
        let params = json!({
            "model": "m",
            "max_tokens": "${plan.result.budget}",
            "messages": "${history.result}",
        });
        assert!(catalog.validate_params("llm/chat", &params).is_empty());
        let embedded =
            json!({"model": "m", "messages": [], "max_tokens": "n=${plan.result.budget}"});
        let issues = catalog.validate_params("llm/chat", &embedded);
        let mut pointers: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
        pointers.sort_unstable();
        assert_eq!(pointers, vec!["/max_tokens", "/messages"], "{issues:?}");
        let input = json!({"model": "m", "input": ["${a.response}", "text"]});
        assert!(catalog.validate_params("llm/embed", &input).is_empty());
    }

    #[test]
    fn unknown_method_and_bad_files_are_reported() {
        let catalog = MethodCatalog::builtin();
        let issues = catalog.check_params("llm/chatt", &json!({}));
        assert!(issues[0].hint.as_deref().unwrap().contains("llm/chat"));
        assert!(matches!(
            MethodCatalog::from_yaml_str(
                "protocol: x/v1\nmethods:\n  y/m:\n    params_schema: {}\n"
            ),
            Err(CatalogError::WrongProtocol { .. })
        ));
        assert!(matches!(
            MethodCatalog::from_yaml_str(
                "protocol: x/v1\nmethods:\n  x/m:\n    params_schema: {type: 12}\n"
            ),
            Err(CatalogError::Schema { .. })
        ));
        let mut catalog = MethodCatalog::from_yaml_str(
            "protocol: x/v1\nmethods:\n  x/m:\n    params_schema: {type: object}\n",
        )
        .unwrap();
        assert!(matches!(
            catalog.add_yaml_str("protocol: x/v2\nmethods:\n  x/m:\n    params_schema: {}\n"),
            Err(CatalogError::Duplicate(_))
        ));
    }
}
