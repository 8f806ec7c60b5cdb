//! Routing targets: where the hub delivers an envelope.
//!
//! On the wire a target is a short string: `hub`, `component:<id>`, `type:<component type>`,
//! `capability:<name>` or `room:<name>`. Strings keep clients in other languages simple.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where an envelope should go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The hub itself (registration, heartbeats, subscriptions, queries).
    Hub,
    /// One component by its id (also used for replies to unregistered clients, whose id is
    /// assigned by the hub).
    Component(String),
    /// One healthy instance of a component type, least loaded first.
    Type(String),
    /// One healthy instance that advertises a capability (e.g. a method such as `llm/chat`).
    Capability(String),
    /// Every socket in a room (broadcast). Several rooms may be given separated by commas
    /// (`room:events,workflow:42`); a socket in more than one of them gets the message once.
    Room(String),
}

/// A target string that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("invalid target {0:?}: expected hub, component:<id>, type:<type>, capability:<name> or room:<name>")]
pub struct InvalidTarget(pub String);

impl FromStr for Target {
    type Err = InvalidTarget;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "hub" {
            return Ok(Target::Hub);
        }
        let (kind, value) = s
            .split_once(':')
            .ok_or_else(|| InvalidTarget(s.to_string()))?;
        if value.is_empty() {
            return Err(InvalidTarget(s.to_string()));
        }
        let value = value.to_string();
        match kind {
            "component" => Ok(Target::Component(value)),
            "type" => Ok(Target::Type(value)),
            "capability" => Ok(Target::Capability(value)),
            "room" => Ok(Target::Room(value)),
            _ => Err(InvalidTarget(s.to_string())),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Hub => f.write_str("hub"),
            Target::Component(id) => write!(f, "component:{id}"),
            Target::Type(t) => write!(f, "type:{t}"),
            Target::Capability(c) => write!(f, "capability:{c}"),
            Target::Room(r) => write!(f, "room:{r}"),
        }
    }
}

/// On the wire a target is a string (see the module doc).
impl schemars::JsonSchema for Target {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Target".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(hub|(component|type|capability|room):.+)$",
            "description": "hub, component:<id>, type:<component type>, capability:<name> or room:<name>"
        })
    }
}

impl Serialize for Target {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_trip_as_strings() {
        for t in [
            Target::Hub,
            Target::Component("qm-1".into()),
            Target::Type("python-provider".into()),
            Target::Capability("llm/chat".into()),
            Target::Room("workflow:abc".into()),
        ] {
            let s = t.to_string();
            assert_eq!(s.parse::<Target>().ok(), Some(t));
        }
    }

    #[test]
    fn bad_targets_are_rejected() {
        for s in ["", "nowhere", "type:", "planet:earth"] {
            assert!(s.parse::<Target>().is_err(), "{s}");
        }
    }
}
