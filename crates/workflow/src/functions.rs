//! The python-provider's built-in functions (`protocols/functions.yaml`, method
//! `python/function`, service `builtin`): what each is called, what it takes (a JSON Schema
//! of its keyword arguments, in the order of its parameters) and returns, and the check of a
//! call's `args` and `kwargs` against that schema.
//!
//! The python-provider checks every call before it runs anything (GZ7002 with the path);
//! validation checks calls that name `service_name: builtin` already at `gz validate` and at
//! submission, where `${...}` references are left alone as for methods. Functions of other
//! services are declared at registration (`docs/protocol.md` §5.7) and checked by them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Map, Value};

use gleitzeit_protocol::routing;

use crate::catalog::{CatalogError, MethodSpec, ParamIssue};
use crate::diagnostic::did_you_mean;

/// The catalogue of built-in functions, compiled in.
pub const BUILTIN_FUNCTIONS: &str = include_str!("../../../protocols/functions.yaml");

/// One function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// Its name, e.g. `fibonacci`.
    pub name: String,
    /// A group, e.g. `math`.
    pub category: String,
    /// What it does (one line).
    pub description: String,
    /// Its parameters in order (positional `args` bind to them in this order).
    pub params: Vec<String>,
    /// JSON Schema of what it returns.
    pub returns: Value,
    /// The schema of its keyword arguments, compiled.
    spec: MethodSpec,
}

/// The built-in functions, sorted by name.
#[derive(Debug, Clone, Default)]
pub struct FunctionCatalog {
    functions: Vec<FunctionSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionsFile {
    functions: BTreeMap<String, FunctionFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FunctionFile {
    category: String,
    description: String,
    parameters: Value,
    #[serde(default)]
    returns: Value,
}

/// The same file read again for the order of each function's parameters.
#[derive(Deserialize)]
struct OrderFile {
    functions: BTreeMap<String, OrderFunction>,
}

#[derive(Deserialize)]
struct OrderFunction {
    parameters: OrderParameters,
}

#[derive(Deserialize)]
struct OrderParameters {
    #[serde(default)]
    properties: Keys,
}

/// The keys of a mapping, in the order written.
#[derive(Default)]
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeysVisitor;
        impl<'de> Visitor<'de> for KeysVisitor {
            type Value = Keys;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(KeysVisitor)
    }
}

/// The built-in catalogue, loaded once.
pub fn builtin_functions() -> &'static FunctionCatalog {
    static CATALOG: std::sync::OnceLock<FunctionCatalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(FunctionCatalog::builtin)
}

/// The issues of a `python/function` task's parameters when it calls a built-in function
/// (`service_name: builtin`): an unknown function, or arguments its schema refuses. Calls of
/// other services' functions are checked by those services.
pub fn check_builtin_call(params: &Value) -> Vec<ParamIssue> {
    if params.get("service_name").and_then(Value::as_str) != Some(routing::BUILTIN_SERVICE) {
        return Vec::new();
    }
    let Some(name) = params.get("function_name").and_then(Value::as_str) else {
        return Vec::new();
    };
    let catalog = builtin_functions();
    let Some(function) = catalog.get(name) else {
        let hint = match did_you_mean(name, catalog.names()) {
            Some(close) => format!("did you mean `{close}`? "),
            None => String::new(),
        } + "`gz functions list` shows every function";
        return vec![ParamIssue {
            pointer: "/function_name".into(),
            message: format!("there is no built-in function `{name}`"),
            hint: Some(hint),
        }];
    };
    let args = params
        .get("args")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let empty = Map::new();
    let kwargs = params
        .get("kwargs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    function.check_call(args, kwargs)
}

impl FunctionCatalog {
    /// The functions of `protocols/functions.yaml`.
    ///
    /// # Panics
    ///
    /// Never in a released build: the file is compiled in and a unit test loads it.
    pub fn builtin() -> FunctionCatalog {
        match FunctionCatalog::from_yaml_str(BUILTIN_FUNCTIONS) {
            Ok(catalog) => catalog,
            Err(err) => panic!("protocols/functions.yaml is invalid: {err}"),
        }
    }

    /// A catalogue from the text of a functions file.
    ///
    /// # Errors
    ///
    /// The text is not a functions file, or a schema does not compile or is not an object
    /// schema with `properties`.
    pub fn from_yaml_str(text: &str) -> Result<FunctionCatalog, CatalogError> {
        let invalid = |e: serde_saphyr::Error| CatalogError::Invalid(e.to_string());
        // YAML 1.2 booleans: a parameter called `n` or `y` stays a name.
        let options = || serde_saphyr::options! { strict_booleans: true };
        let file: FunctionsFile =
            serde_saphyr::from_str_with_options(text, options()).map_err(invalid)?;
        let mut order: OrderFile =
            serde_saphyr::from_str_with_options(text, options()).map_err(invalid)?;
        let mut functions = Vec::with_capacity(file.functions.len());
        for (name, f) in file.functions {
            if f.parameters.get("type").and_then(Value::as_str) != Some("object") {
                return Err(CatalogError::Schema {
                    method: name,
                    message: "parameters must be a schema of `type: object`".into(),
                });
            }
            let params = order
                .functions
                .remove(&name)
                .map(|o| o.parameters.properties.0)
                .unwrap_or_default();
            let spec = MethodSpec::for_schema(&name, f.parameters)?;
            functions.push(FunctionSpec {
                name,
                category: f.category,
                description: f.description,
                params,
                returns: f.returns,
                spec,
            });
        }
        Ok(FunctionCatalog { functions })
    }

    /// The function called `name`.
    pub fn get(&self, name: &str) -> Option<&FunctionSpec> {
        self.functions
            .binary_search_by(|f| f.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.functions[i])
    }

    /// Every function, by name.
    pub fn iter(&self) -> impl Iterator<Item = &FunctionSpec> {
        self.functions.iter()
    }

    /// Every name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.iter().map(|f| f.name.as_str())
    }
}

impl FunctionSpec {
    /// Its keyword arguments' schema.
    pub fn parameters(&self) -> &Value {
        &self.spec.params_schema
    }

    /// `args` bound to the parameters in order, with `kwargs` added: the keyword arguments
    /// of the call.
    ///
    /// # Errors
    ///
    /// More positional arguments than parameters, or one given both ways (pointer `/args`
    /// or `/kwargs/<name>`).
    pub fn bind(&self, args: &[Value], kwargs: &Map<String, Value>) -> Result<Value, ParamIssue> {
        if args.len() > self.params.len() {
            return Err(ParamIssue {
                pointer: "/args".into(),
                message: format!(
                    "{} takes at most {} positional argument(s), {} given",
                    self.name,
                    self.params.len(),
                    args.len()
                ),
                hint: Some(format!("its parameters: {}", self.signature())),
            });
        }
        let mut bound = Map::new();
        for (name, value) in self.params.iter().zip(args) {
            bound.insert(name.clone(), value.clone());
        }
        for (name, value) in kwargs {
            if bound.contains_key(name) {
                return Err(ParamIssue {
                    pointer: format!("/kwargs/{name}"),
                    message: format!("`{name}` is given both in args and in kwargs"),
                    hint: None,
                });
            }
            bound.insert(name.clone(), value.clone());
        }
        Ok(Value::Object(bound))
    }

    /// Every way a call with `args` and `kwargs` violates the schema; pointers are those of
    /// the task's parameters (`/kwargs/n`, or `/args/0` for a positional argument).
    /// `${...}` references are left alone (see `crate::catalog`).
    pub fn check_call(&self, args: &[Value], kwargs: &Map<String, Value>) -> Vec<ParamIssue> {
        let bound = match self.bind(args, kwargs) {
            Ok(bound) => bound,
            Err(issue) => return vec![issue],
        };
        self.spec
            .check_params(&bound)
            .into_iter()
            .map(|mut issue| {
                issue.pointer = self.task_pointer(&issue.pointer, args.len());
                issue
            })
            .collect()
    }

    /// A pointer into the bound arguments as a pointer into the task's parameters.
    fn task_pointer(&self, pointer: &str, positional: usize) -> String {
        let rest = pointer.strip_prefix('/').unwrap_or(pointer);
        let (first, tail) = match rest.split_once('/') {
            Some((first, tail)) => (first, format!("/{tail}")),
            None => (rest, String::new()),
        };
        if first.is_empty() {
            return "/kwargs".into();
        }
        match self.params.iter().position(|p| p == first) {
            Some(i) if i < positional => format!("/args/{i}{tail}"),
            _ => format!("/kwargs/{first}{tail}"),
        }
    }

    /// `fibonacci(n: integer) -> array`, from the schemas.
    pub fn signature(&self) -> String {
        let schema = self.parameters();
        let props = schema.get("properties");
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let params: Vec<String> = self
            .params
            .iter()
            .map(|p| {
                let ty = props
                    .and_then(|ps| ps.get(p))
                    .map(type_name)
                    .unwrap_or_else(|| "any".into());
                let optional = if required.contains(&p.as_str()) {
                    ""
                } else {
                    " = …"
                };
                format!("{p}: {ty}{optional}")
            })
            .collect();
        format!(
            "{}({}) -> {}",
            self.name,
            params.join(", "),
            type_name(&self.returns)
        )
    }

    /// The declaration a provider publishes in its registration metadata
    /// (`docs/protocol.md` §5.7).
    pub fn declaration(&self, service: &str) -> Value {
        json!({
            "name": self.name,
            "service_name": service,
            "description": self.description,
            "category": self.category,
            "signature": self.signature(),
            "timeout": null,
            "is_async": false,
            "parameters": self.parameters(),
            "returns": self.returns,
        })
    }
}

/// A schema's type in a signature: `integer`, `array[string]`, `string | null`, `any`.
fn type_name(schema: &Value) -> String {
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => match schema.get("items") {
            Some(items) if items.get("type").is_some() => format!("array[{}]", type_name(items)),
            _ => "array".into(),
        },
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
functions:
  repeat:
    category: text
    description: Repeats a text.
    parameters:
      type: object
      properties:
        text: {type: string}
        times: {type: integer, minimum: 0, maximum: 10}
      required: [text]
      additionalProperties: false
    returns: {type: array, items: {type: string}}
"#;

    fn kwargs(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_builtin_catalogue_loads_and_every_function_has_ordered_parameters() {
        let catalog = FunctionCatalog::builtin();
        assert!(catalog.iter().count() >= 10);
        for f in catalog.iter() {
            let props = f.parameters()["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            let mut sorted = f.params.clone();
            sorted.sort();
            let mut names: Vec<String> = props.keys().cloned().collect();
            names.sort();
            assert_eq!(sorted, names, "{}", f.name);
            assert!(!f.description.is_empty(), "{}", f.name);
        }
        assert!(catalog.get("fibonacci").is_some());
        assert!(catalog.get("no_such_function").is_none());
    }

    #[test]
    fn positional_and_keyword_arguments_are_bound_and_checked_with_their_paths() {
        let catalog = FunctionCatalog::from_yaml_str(FILE).expect("valid");
        let f = catalog.get("repeat").expect("repeat");
        assert_eq!(f.params, ["text", "times"]);
        assert_eq!(
            f.signature(),
            "repeat(text: string, times: integer = …) -> array[string]"
        );
        assert!(f
            .check_call(&[json!("a")], &kwargs(json!({"times": 2})))
            .is_empty());
        let issues = f.check_call(&[], &kwargs(json!({"text": "a", "times": "x"})));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].pointer, "/kwargs/times");
        let issues = f.check_call(&[json!(5)], &kwargs(json!({})));
        assert_eq!(issues[0].pointer, "/args/0");
        let issues = f.check_call(&[], &kwargs(json!({"text": "a", "colour": 1})));
        assert_eq!(issues[0].pointer, "/kwargs/colour");
        let issues = f.check_call(&[json!("a"), json!(1), json!(2)], &Map::new());
        assert_eq!(issues[0].pointer, "/args");
        let issues = f.check_call(&[json!("a")], &kwargs(json!({"text": "b"})));
        assert_eq!(issues[0].pointer, "/kwargs/text");
        let issues = f.check_call(&[], &Map::new());
        assert_eq!(issues[0].pointer, "/kwargs", "{issues:?}");
        // A reference may become anything at run time.
        assert!(f
            .check_call(&[], &kwargs(json!({"text": "a", "times": "${t.result}"})))
            .is_empty());
    }
}
