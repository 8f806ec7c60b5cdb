//! Routing keys: what the queue-manager queues by, the engine leases and dispatches by, and
//! providers list among their capabilities (`docs/protocol.md` §5.7).
//!
//! For most methods the key is the method itself. A `python/function` task is routed by the
//! function it calls (`python/function#count_words`), and by the service that must run it
//! when it names one (`python/function#count_words@Python Tasks`), so a task reaches only a
//! provider that declares that function, several providers declaring it share the load, and
//! a function nobody declares waits and fails like any method nobody serves (GZ2015).

use std::borrow::Cow;

use serde_json::Value;

use crate::records::JsonText;

/// The method calling a named function.
pub const PYTHON_FUNCTION: &str = "python/function";

/// The service name of the python-provider's built-in functions.
pub const BUILTIN_SERVICE: &str = "builtin";

/// The routing key of a task of `method` with these parameters (after substitution).
pub fn route_key<'a>(method: &'a str, params: &Value) -> Cow<'a, str> {
    if method != PYTHON_FUNCTION {
        return Cow::Borrowed(method);
    }
    let name = params.get("function_name").and_then(Value::as_str);
    let service = params.get("service_name").and_then(Value::as_str);
    function_route(method, name, service)
}

/// [`route_key`] of parameters kept as JSON text (read only for `python/function`, and then
/// only the two names).
pub fn route_key_text<'a>(method: &'a str, params: Option<&JsonText>) -> Cow<'a, str> {
    if method != PYTHON_FUNCTION {
        return Cow::Borrowed(method);
    }
    #[derive(serde::Deserialize, Default)]
    struct Names<'t> {
        #[serde(borrow, default)]
        function_name: Option<Cow<'t, str>>,
        #[serde(borrow, default)]
        service_name: Option<Cow<'t, str>>,
    }
    let text = params.and_then(JsonText::text).unwrap_or("null");
    // Anything but an object (or names that are not strings) names nothing.
    let names: Names<'_> = serde_json::from_str::<Option<Names<'_>>>(text)
        .ok()
        .flatten()
        .unwrap_or_default();
    function_route(
        method,
        names.function_name.as_deref(),
        names.service_name.as_deref(),
    )
}

/// The key of a `python/function` task naming `name` (of `service`).
fn function_route<'a>(method: &'a str, name: Option<&str>, service: Option<&str>) -> Cow<'a, str> {
    match (name, service) {
        (Some(name), service) => Cow::Owned(function_key(name, service)),
        // Validation refuses a python/function task without a name; should one get here,
        // it waits under the bare method, which no provider serves, and fails with GZ2015.
        (None, _) => Cow::Borrowed(method),
    }
}

/// The routing key of the function `name` (of the service `service`, if given): what a
/// provider declaring it lists among its capabilities.
pub fn function_key(name: &str, service: Option<&str>) -> String {
    match service {
        Some(service) => format!("{PYTHON_FUNCTION}#{name}@{service}"),
        None => format!("{PYTHON_FUNCTION}#{name}"),
    }
}

/// The capabilities of a provider of `service` declaring `functions`: the method, and for
/// each function its key with and without the service.
pub fn function_capabilities<'a>(
    service: &str,
    functions: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let mut caps = vec![PYTHON_FUNCTION.to_string()];
    for f in functions {
        caps.push(function_key(f, None));
        caps.push(function_key(f, Some(service)));
    }
    caps
}

/// What a routing key asks for, in words (for errors such as GZ2015).
pub fn describe(key: &str) -> String {
    match key
        .strip_prefix(PYTHON_FUNCTION)
        .and_then(|rest| rest.strip_prefix('#'))
    {
        Some(rest) => match rest.split_once('@') {
            Some((name, service)) => format!("the function {name} of the service {service:?}"),
            None => format!("the function {rest}"),
        },
        None => key.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn methods_route_by_themselves_and_functions_by_name_and_service() {
        assert_eq!(
            route_key("python/execute", &json!({"code": "x"})),
            "python/execute"
        );
        assert_eq!(
            route_key(PYTHON_FUNCTION, &json!({"function_name": "fibonacci"})),
            "python/function#fibonacci"
        );
        assert_eq!(
            route_key(
                PYTHON_FUNCTION,
                &json!({"function_name": "f", "service_name": "Python Tasks"})
            ),
            "python/function#f@Python Tasks"
        );
        assert_eq!(route_key(PYTHON_FUNCTION, &json!({})), PYTHON_FUNCTION);
    }

    #[test]
    fn a_service_declares_each_function_with_and_without_its_name() {
        assert_eq!(
            function_capabilities("s", ["f"]),
            [
                "python/function",
                "python/function#f",
                "python/function#f@s"
            ]
        );
        assert_eq!(
            describe("python/function#f@s"),
            "the function f of the service \"s\""
        );
        assert_eq!(describe("python/function#f"), "the function f");
        assert_eq!(describe("llm/chat"), "llm/chat");
    }
}
