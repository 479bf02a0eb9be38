//! The OpenCode config the gateway passes to its sidecar in `OPENCODE_CONFIG_CONTENT`.
//!
//! The gateway adds one thing: shell commands ask before they run (`permission.bash`
//! `"*": "ask"`), with a few read-only git commands and the gateway's own `send` command allowed,
//! so tool calls reach the approval flow. Whatever the operator already put in
//! `OPENCODE_CONFIG_CONTENT` is kept and wins: the additions are merged into it, never written
//! over it, and when the operator already decided for every shell command (`bash` set to one
//! action, or a `bash["*"]` rule, or `permission` set to one action) nothing is added at all.
//!
//! Order matters: OpenCode evaluates permission rules in the order they are written and the last
//! match wins. So the content is handled as order-preserving JSON ([`OrderedJson`]), the added
//! `"*": "ask"` goes first in the `bash` object (the specific rules after it), the operator's own
//! `bash` rules come after the added ones, and a newly added `bash` key goes last in
//! `permission`, after any `"*"` rule of the operator for all tools.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The environment variable OpenCode reads extra config from.
pub const CONFIG_CONTENT_VAR: &str = "OPENCODE_CONFIG_CONTENT";

/// Shell commands the gateway lets run without asking: read-only git and its own `send`.
pub const ALLOWED_BASH_PATTERNS: [&str; 5] = [
    "git log *",
    "git diff *",
    "git status *",
    "git show *",
    "agent-chat-gateway send *",
];

/// The operator's `OPENCODE_CONFIG_CONTENT` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigContentError {
    /// It is not JSON.
    #[error("{CONFIG_CONTENT_VAR} contains invalid JSON: {0}")]
    InvalidJson(String),
    /// It is JSON, but not an object.
    #[error("{CONFIG_CONTENT_VAR} must be a JSON object, not {0}")]
    NotAnObject(&'static str),
}

/// A JSON value that keeps object keys in the order they were written (OpenCode's permission
/// rules depend on it; `serde_json::Value` sorts keys in this workspace).
#[derive(Debug, Clone, PartialEq)]
pub enum OrderedJson {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, exactly as serde_json read it.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<OrderedJson>),
    /// An object, entries in written order.
    Object(Vec<(String, OrderedJson)>),
}

impl OrderedJson {
    /// Parses JSON text, keeping key order.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Compact JSON text, keys in order.
    pub fn to_json_string(&self) -> String {
        // Serializing a tree of plain values into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The value of `key` when this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&OrderedJson> {
        match self {
            OrderedJson::Object(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut OrderedJson> {
        match self {
            OrderedJson::Object(entries) => {
                entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            OrderedJson::Null => "null",
            OrderedJson::Bool(_) => "a boolean",
            OrderedJson::Number(_) => "a number",
            OrderedJson::String(_) => "a string",
            OrderedJson::Array(_) => "an array",
            OrderedJson::Object(_) => "an object",
        }
    }

    fn string(s: &str) -> Self {
        OrderedJson::String(s.to_owned())
    }
}

impl Serialize for OrderedJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            OrderedJson::Null => serializer.serialize_unit(),
            OrderedJson::Bool(b) => serializer.serialize_bool(*b),
            OrderedJson::Number(n) => n.serialize(serializer),
            OrderedJson::String(s) => serializer.serialize_str(s),
            OrderedJson::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            OrderedJson::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for OrderedJson {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(OrderedJsonVisitor)
    }
}

struct OrderedJsonVisitor;

impl<'de> Visitor<'de> for OrderedJsonVisitor {
    type Value = OrderedJson;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<OrderedJson, E> {
        Ok(serde_json::Number::from_f64(v).map_or(OrderedJson::Null, OrderedJson::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<OrderedJson, E> {
        Ok(OrderedJson::String(v))
    }

    fn visit_unit<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }

    fn visit_none<E>(self) -> Result<OrderedJson, E> {
        Ok(OrderedJson::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<OrderedJson, D::Error> {
        OrderedJson::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OrderedJson, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(OrderedJson::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedJson, A::Error> {
        let mut entries: Vec<(String, OrderedJson)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, OrderedJson>()? {
            // JSON.parse keeps the last value of a repeated key, at the first one's place.
            match entries.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => entries.push((key, value)),
            }
        }
        Ok(OrderedJson::Object(entries))
    }
}

/// The gateway's `bash` rules: ask for everything, then the allow list.
fn default_bash_rules() -> Vec<(String, OrderedJson)> {
    std::iter::once(("*".to_owned(), OrderedJson::string("ask")))
        .chain(
            ALLOWED_BASH_PATTERNS
                .iter()
                .map(|p| ((*p).to_owned(), OrderedJson::string("allow"))),
        )
        .collect()
}

/// Merges the gateway's permission defaults into the operator's `OPENCODE_CONFIG_CONTENT`
/// (`None` or blank = no content) and returns the JSON text for the sidecar. The operator's
/// settings win (see the module docs for the exact rules); invalid content is an error, so a
/// typo is reported when the backend is built rather than silently replaced.
pub fn merged_config_content(existing: Option<&str>) -> Result<String, ConfigContentError> {
    let mut config = match existing.map(str::trim).filter(|s| !s.is_empty()) {
        Some(text) => {
            OrderedJson::parse(text).map_err(|e| ConfigContentError::InvalidJson(e.to_string()))?
        }
        None => OrderedJson::Object(Vec::new()),
    };
    let OrderedJson::Object(top) = &mut config else {
        return Err(ConfigContentError::NotAnObject(config.kind()));
    };
    add_permission_defaults(top);
    Ok(config.to_json_string())
}

fn add_permission_defaults(top: &mut Vec<(String, OrderedJson)>) {
    let Some((_, permission)) = top.iter_mut().find(|(k, _)| k == "permission") else {
        top.push((
            "permission".to_owned(),
            OrderedJson::Object(vec![(
                "bash".to_owned(),
                OrderedJson::Object(default_bash_rules()),
            )]),
        ));
        return;
    };
    // `permission: "allow"` (one action for every tool) is the operator's decision for bash too.
    let OrderedJson::Object(_) = permission else {
        return;
    };
    match permission.get_mut("bash") {
        None => {
            if let OrderedJson::Object(tools) = permission {
                tools.push(("bash".to_owned(), OrderedJson::Object(default_bash_rules())));
            }
        }
        Some(OrderedJson::Object(rules)) if !rules.iter().any(|(k, _)| k == "*") => {
            let mut merged: Vec<(String, OrderedJson)> = default_bash_rules()
                .into_iter()
                .filter(|(pattern, _)| !rules.iter().any(|(k, _)| k == pattern))
                .collect();
            merged.append(rules);
            *rules = merged;
        }
        // A `"*"` rule, or one action for all of bash: the operator decided.
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(existing: Option<&str>) -> String {
        merged_config_content(existing).unwrap()
    }

    const DEFAULT_BASH: &str = r#"{"*":"ask","git log *":"allow","git diff *":"allow","git status *":"allow","git show *":"allow","agent-chat-gateway send *":"allow"}"#;

    #[test]
    fn no_content_gets_the_defaults() {
        let expected = format!(r#"{{"permission":{{"bash":{DEFAULT_BASH}}}}}"#);
        assert_eq!(merged(None), expected);
        assert_eq!(merged(Some("  ")), expected);
    }

    #[test]
    fn other_settings_are_kept_in_order() {
        let existing = r#"{"model":"mock/m","provider":{"z":{"a":1.5,"b":[1,"x",null,true]},"a":{}},"autoupdate":false}"#;
        let expected = format!(
            r#"{{"model":"mock/m","provider":{{"z":{{"a":1.5,"b":[1,"x",null,true]}},"a":{{}}}},"autoupdate":false,"permission":{{"bash":{DEFAULT_BASH}}}}}"#
        );
        assert_eq!(merged(Some(existing)), expected);
    }

    #[test]
    fn bash_rules_without_a_star_get_ours_first_and_theirs_last() {
        let existing = r#"{"permission":{"edit":"ask","bash":{"rm *":"deny","git log *":"deny"}}}"#;
        assert_eq!(
            merged(Some(existing)),
            r#"{"permission":{"edit":"ask","bash":{"*":"ask","git diff *":"allow","git status *":"allow","git show *":"allow","agent-chat-gateway send *":"allow","rm *":"deny","git log *":"deny"}}}"#
        );
    }

    #[test]
    fn the_operators_decision_for_all_of_bash_is_left_alone() {
        for existing in [
            r#"{"permission":{"bash":{"rm *":"deny","*":"allow"}}}"#,
            r#"{"permission":{"bash":"allow"}}"#,
            r#"{"permission":"allow"}"#,
        ] {
            assert_eq!(merged(Some(existing)), existing, "{existing}");
        }
    }

    #[test]
    fn a_new_bash_key_goes_after_a_rule_for_all_tools() {
        assert_eq!(
            merged(Some(r#"{"permission":{"*":"allow"}}"#)),
            format!(r#"{{"permission":{{"*":"allow","bash":{DEFAULT_BASH}}}}}"#)
        );
    }

    #[test]
    fn invalid_content_is_an_error_naming_the_variable() {
        let err = merged_config_content(Some("{not json")).unwrap_err();
        assert!(matches!(err, ConfigContentError::InvalidJson(_)));
        assert!(err
            .to_string()
            .starts_with("OPENCODE_CONFIG_CONTENT contains invalid JSON"));
        assert_eq!(
            merged_config_content(Some("[1]")).unwrap_err(),
            ConfigContentError::NotAnObject("an array")
        );
    }

    #[test]
    fn ordered_json_round_trips_and_keeps_the_last_duplicate() {
        let text = r#"{"b":1,"a":{"y":-2,"x":1e3},"b":2}"#;
        let value = OrderedJson::parse(text).unwrap();
        assert_eq!(value.to_json_string(), r#"{"b":2,"a":{"y":-2,"x":1000.0}}"#);
        assert_eq!(value.get("b"), Some(&OrderedJson::Number(2.into())));
        assert_eq!(value.get("nope"), None);
    }
}
