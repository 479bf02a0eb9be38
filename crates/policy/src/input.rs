//! The tool call's input as JSON that remembers key order.
//!
//! Tools other than Bash/Read/… are matched against `json.dumps(tool_input)` as Python's
//! gateway produced it: keys in the order the agent sent them, `", "` and `": "` separators,
//! non-ASCII characters kept. A `serde_json::Value` (without the `preserve_order` feature,
//! which this workspace does not enable) sorts keys, so the broker should hand over the input
//! as text ([`ToolInput::parse`]) or deserialize the hook body's `tool_input` field straight
//! into a [`ToolInput`].

use std::fmt::{self, Write as _};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value with object keys in their original order.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ToolInput {
    /// `null` (also what a missing input means).
    #[default]
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number as serde_json read it.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<ToolInput>),
    /// An object, keys in document order.
    Object(Vec<(String, ToolInput)>),
}

impl ToolInput {
    /// Parses JSON text, keeping key order.
    pub fn parse(text: &str) -> Result<ToolInput, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Converts a `serde_json::Value` (its key order is whatever serde_json kept).
    pub fn from_value(value: &serde_json::Value) -> ToolInput {
        match value {
            serde_json::Value::Null => ToolInput::Null,
            serde_json::Value::Bool(b) => ToolInput::Bool(*b),
            serde_json::Value::Number(n) => ToolInput::Number(n.clone()),
            serde_json::Value::String(s) => ToolInput::String(s.clone()),
            serde_json::Value::Array(a) => {
                ToolInput::Array(a.iter().map(ToolInput::from_value).collect())
            }
            serde_json::Value::Object(o) => ToolInput::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), ToolInput::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// The value of an object field (the first one, if the key repeats).
    pub fn get(&self, key: &str) -> Option<&ToolInput> {
        match self {
            ToolInput::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The field as a string; `None` when missing or not a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(ToolInput::String(s)) => Some(s),
            _ => None,
        }
    }

    /// `json.dumps(value, ensure_ascii=False)` as Python 3 writes it.
    pub fn to_python_json(&self) -> String {
        let mut out = String::new();
        self.write_python(&mut out);
        out
    }

    fn write_python(&self, out: &mut String) {
        match self {
            ToolInput::Null => out.push_str("null"),
            ToolInput::Bool(true) => out.push_str("true"),
            ToolInput::Bool(false) => out.push_str("false"),
            ToolInput::Number(n) => out.push_str(&python_number(n)),
            ToolInput::String(s) => write_python_string(s, out),
            ToolInput::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.write_python(out);
                }
                out.push(']');
            }
            ToolInput::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_python_string(k, out);
                    out.push_str(": ");
                    v.write_python(out);
                }
                out.push('}');
            }
        }
    }
}

/// Python's float repr (`1.0`, `1e+16`, `1.5e-05`); integers as written.
fn python_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let Some(f) = n.as_f64() else {
        return n.to_string();
    };
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    // Shortest round-trip digits and exponent, then Python's layout rules.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1; // digits before the decimal point
        let s = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if (point as usize) >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{s}")
    } else {
        let (head, tail) = digits.split_at(1);
        let frac = if tail.is_empty() {
            String::new()
        } else {
            format!(".{tail}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{head}{frac}e{esign}{:02}", exp.abs())
    }
}

fn write_python_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<'de> Deserialize<'de> for ToolInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InputVisitor)
    }
}

struct InputVisitor;

impl<'de> Visitor<'de> for InputVisitor {
    type Value = ToolInput;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<ToolInput, E> {
        Ok(ToolInput::Null)
    }
    fn visit_none<E>(self) -> Result<ToolInput, E> {
        Ok(ToolInput::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ToolInput, D::Error> {
        ToolInput::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<ToolInput, E> {
        Ok(ToolInput::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<ToolInput, E> {
        Ok(ToolInput::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<ToolInput, E> {
        Ok(ToolInput::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<ToolInput, E> {
        Ok(serde_json::Number::from_f64(v)
            .map(ToolInput::Number)
            .unwrap_or(ToolInput::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<ToolInput, E> {
        Ok(ToolInput::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<ToolInput, E> {
        Ok(ToolInput::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ToolInput, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<ToolInput>()? {
            items.push(item);
        }
        Ok(ToolInput::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ToolInput, A::Error> {
        let mut fields = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, ToolInput>()? {
            fields.push((k, v));
        }
        Ok(ToolInput::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_dumps_keeps_order_separators_and_unicode() {
        let input = ToolInput::parse(
            r#"{"pattern":"*.py","path":"/w","a":[1,2.5,true,null],"é":"ü\n\"\u0001"}"#,
        )
        .unwrap();
        assert_eq!(
            input.to_python_json(),
            "{\"pattern\": \"*.py\", \"path\": \"/w\", \"a\": [1, 2.5, true, null], \"é\": \"ü\\n\\\"\\u0001\"}"
        );
    }

    #[test]
    fn python_float_repr() {
        let cases = [
            ("1.0", "1.0"),
            ("1e16", "1e+16"),
            ("1.5e-5", "1.5e-05"),
            ("0.0001", "0.0001"),
            ("123456.789", "123456.789"),
            ("-2.5", "-2.5"),
            ("1e15", "1000000000000000.0"),
            ("100", "100"),
            ("-7", "-7"),
        ];
        for (json, py) in cases {
            let v = ToolInput::parse(json).unwrap();
            assert_eq!(v.to_python_json(), py, "{json}");
        }
    }

    #[test]
    fn empty_object_and_nesting() {
        assert_eq!(ToolInput::parse("{}").unwrap().to_python_json(), "{}");
        assert_eq!(
            ToolInput::parse(r#"{"b":{"z":1,"a":[]}}"#)
                .unwrap()
                .to_python_json(),
            r#"{"b": {"z": 1, "a": []}}"#
        );
    }
}
