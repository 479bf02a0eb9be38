//! Reads YAML text into a [`Node`] tree that remembers where every value and key came from.
//!
//! Why not `serde_yaml::Value`: the 0.5.x gateway read its config with PyYAML's `safe_load`, which
//! speaks YAML 1.1 — `enabled: yes` is a boolean, `mode: 0644` is octal, `timeout: 6:00` is 360.
//! A user's existing file must load the same here, so plain scalars are resolved with PyYAML's
//! rules (see [`resolve_plain`]). Anchors, aliases and `<<` merge keys work as in PyYAML. Keeping
//! the position on every node means a problem found after templates are merged still points at
//! the line the value was written on.
//!
//! Two deliberate differences from PyYAML: a key written twice in one mapping is an error (PyYAML
//! silently keeps the last one), and timestamps stay strings.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::error::Location;

/// A YAML value with its position in the file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// The value.
    pub value: Value,
    /// Where the value starts (for a block mapping: its first key).
    pub at: Location,
    /// The source text of a plain scalar that resolved to a non-string (`0123`, `yes`), so
    /// free-text fields such as passwords can take it verbatim.
    pub plain_text: Option<String>,
}

/// The YAML value kinds, after PyYAML-compatible scalar resolution.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The key as written.
    pub key: String,
    /// Where the key is.
    pub key_at: Location,
    /// The value.
    pub value: Node,
}

impl Node {
    /// A node with no source text, used when the loader builds values itself.
    pub fn new(value: Value, at: Location) -> Node {
        Node {
            value,
            at,
            plain_text: None,
        }
    }

    /// Python's name for the value's type, as the 0.5.x error messages print it.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Seq(_) => "list",
            Value::Map(_) => "dict",
        }
    }

    /// The mapping's entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// True for `null`, `~` and an empty value.
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The entry for `key` in a mapping, if present.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The value for `key` in a mapping, if present (including an explicit null).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Python's `repr()` of the value, for messages that quote a value back to the user.
    pub fn py_repr(&self) -> String {
        match &self.value {
            Value::Null => "None".to_string(),
            Value::Bool(true) => "True".to_string(),
            Value::Bool(false) => "False".to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => py_float(*f),
            Value::Str(s) => py_str_repr(s),
            Value::Seq(items) => {
                let inner: Vec<String> = items.iter().map(Node::py_repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Value::Map(entries) => {
                let inner: Vec<String> = entries
                    .iter()
                    .map(|e| format!("{}: {}", py_str_repr(&e.key), e.value.py_repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
        }
    }

    /// Equality of values as Python compares them (`10 == 10.0`), ignoring positions.
    pub fn same_value(&self, other: &Node) -> bool {
        match (&self.value, &other.value) {
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => *a as f64 == *b,
            (Value::Seq(a), Value::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter().all(|ea| {
                        b.iter()
                            .any(|eb| eb.key == ea.key && eb.value.same_value(&ea.value))
                    })
            }
            (a, b) => a == b,
        }
    }
}

/// Python's `repr()` of a float (`10.0`, `0.5`, `inf`).
pub(crate) fn py_float(f: f64) -> String {
    if f.is_nan() {
        "nan".to_string()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_string()
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}

/// Python's `repr()` of a string: single quotes unless the text holds one and no double quote.
pub(crate) fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A problem that stops the YAML from being read at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// Where, when known.
    pub at: Option<Location>,
    /// What.
    pub message: String,
}

/// Parses `text` (one YAML document) into a tree; `Ok(None)` for an empty document.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = TreeBuilder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        return Err(SyntaxError {
            at: Some(location(*e.marker())),
            message: format!("YAML syntax error: {}", e.info()),
        });
    }
    if let Some(err) = builder.error {
        return Err(err);
    }
    if builder.documents > 1 {
        return Err(SyntaxError {
            at: builder.second_document_at,
            message: "expected a single YAML document, found several (separated by '---')"
                .to_string(),
        });
    }
    Ok(builder.root)
}

fn location(m: Marker) -> Location {
    Location {
        line: m.line(),
        column: m.col() + 1,
    }
}

/// What a mapping under construction waits for next.
#[derive(Debug)]
enum KeySlot {
    /// A key.
    Empty,
    /// The value of this key.
    Key(String, Location),
    /// The value of a `<<` merge key.
    Merge(Location),
}

#[derive(Debug)]
enum Frame {
    Seq {
        anchor: usize,
        at: Location,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        at: Location,
        entries: Vec<Entry>,
        merged: Vec<Node>,
        slot: KeySlot,
    },
}

/// Turns parser events into a [`Node`] tree (the first error wins; later events are ignored).
#[derive(Debug, Default)]
struct TreeBuilder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    second_document_at: Option<Location>,
    error: Option<SyntaxError>,
}

impl TreeBuilder {
    fn fail(&mut self, at: Location, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError {
                at: Some(at),
                message,
            });
        }
    }

    /// Adds a finished node to its parent (or makes it the document root).
    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let Some(top) = self.stack.last_mut() else {
            self.root = Some(node);
            return;
        };
        match top {
            Frame::Seq { items, .. } => items.push(node),
            Frame::Map { slot, .. } => match std::mem::replace(slot, KeySlot::Empty) {
                KeySlot::Empty => {
                    let key = match &node.value {
                        Value::Str(s) => s.clone(),
                        Value::Null => node.plain_text.clone().unwrap_or_default(),
                        Value::Bool(_) | Value::Int(_) | Value::Float(_) => {
                            node.plain_text.clone().unwrap_or_else(|| node.py_repr())
                        }
                        Value::Seq(_) | Value::Map(_) => {
                            self.fail(
                                node.at,
                                "a mapping key must be a plain value, not a list or mapping"
                                    .to_string(),
                            );
                            String::new()
                        }
                    };
                    if let Some(Frame::Map { slot, .. }) = self.stack.last_mut() {
                        *slot = KeySlot::Key(key, node.at);
                    }
                }
                KeySlot::Key(key, key_at) => self.add_entry(key, key_at, node),
                KeySlot::Merge(at) => self.add_merge(at, node),
            },
        }
    }

    fn add_entry(&mut self, key: String, key_at: Location, value: Node) {
        let mut duplicate_of = None;
        if let Some(Frame::Map { entries, .. }) = self.stack.last_mut() {
            if let Some(prev) = entries.iter().find(|e| e.key == key) {
                duplicate_of = Some(prev.key_at);
            } else {
                entries.push(Entry {
                    key: key.clone(),
                    key_at,
                    value,
                });
            }
        }
        if let Some(first) = duplicate_of {
            self.fail(
                key_at,
                format!(
                    "duplicate key '{key}' (first set at line {}); each key may appear once per mapping",
                    first.line
                ),
            );
        }
    }

    fn add_merge(&mut self, at: Location, value: Node) {
        let sources = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) if items.iter().all(|n| n.as_map().is_some()) => items,
            _ => {
                self.fail(
                    at,
                    "a '<<' merge key needs a mapping or a list of mappings".to_string(),
                );
                return;
            }
        };
        if let Some(Frame::Map { merged, .. }) = self.stack.last_mut() {
            merged.extend(sources);
        }
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        tag: Option<Tag>,
        at: Location,
    ) -> Node {
        let waiting_for_key = matches!(
            self.stack.last(),
            Some(Frame::Map {
                slot: KeySlot::Empty,
                ..
            })
        );
        if let Some(tag) = tag {
            return self.tagged_scalar(text, &tag, at);
        }
        if style != TScalarStyle::Plain {
            return Node::new(Value::Str(text), at);
        }
        if waiting_for_key {
            // Keys keep their text: `1:` names an agent "1", as it would read in the file.
            return Node::new(Value::Str(text), at);
        }
        let value = resolve_plain(&text);
        let plain_text = (!matches!(value, Value::Str(_))).then_some(text);
        Node {
            value,
            at,
            plain_text,
        }
    }

    fn tagged_scalar(&mut self, text: String, tag: &Tag, at: Location) -> Node {
        let core = tag.handle == "tag:yaml.org,2002:";
        let value = match (core, tag.suffix.as_str()) {
            (true, "str") => Some(Value::Str(text.clone())),
            (false, "") if tag.handle == "!" => Some(Value::Str(text.clone())),
            (true, "null") => Some(Value::Null),
            (true, "bool") => match resolve_plain(&text) {
                v @ Value::Bool(_) => Some(v),
                _ => None,
            },
            (true, "int") => match resolve_plain(&text) {
                v @ Value::Int(_) => Some(v),
                _ => None,
            },
            (true, "float") => match resolve_plain(&text) {
                Value::Int(i) => Some(Value::Float(i as f64)),
                v @ Value::Float(_) => Some(v),
                _ => None,
            },
            _ => None,
        };
        match value {
            Some(value) => Node {
                value,
                at,
                plain_text: Some(text),
            },
            None => {
                self.fail(
                    at,
                    format!(
                        "unsupported YAML tag '{}{}' on value '{text}'",
                        tag.handle, tag.suffix
                    ),
                );
                Node::new(Value::Null, at)
            }
        }
    }

    fn check_collection_tag(&mut self, tag: Option<Tag>, expected: &str, at: Location) {
        if let Some(tag) = tag {
            let fine = tag.handle == "tag:yaml.org,2002:" && tag.suffix == expected;
            if !fine {
                self.fail(
                    at,
                    format!("unsupported YAML tag '{}{}'", tag.handle, tag.suffix),
                );
            }
        }
    }
}

impl MarkedEventReceiver for TreeBuilder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = location(mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.second_document_at = Some(at);
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let is_merge_key = style == TScalarStyle::Plain
                    && text == "<<"
                    && tag.is_none()
                    && matches!(
                        self.stack.last(),
                        Some(Frame::Map {
                            slot: KeySlot::Empty,
                            ..
                        })
                    );
                if is_merge_key {
                    if let Some(Frame::Map { slot, .. }) = self.stack.last_mut() {
                        *slot = KeySlot::Merge(at);
                    }
                    return;
                }
                let node = self.scalar(text, style, tag, at);
                self.complete(node, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id) {
                Some(node) => {
                    let node = node.clone();
                    self.complete(node, 0);
                }
                None => self.fail(at, "alias refers to an unknown anchor".to_string()),
            },
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag, "seq", at);
                self.stack.push(Frame::Seq {
                    anchor,
                    at,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag, "map", at);
                self.stack.push(Frame::Map {
                    anchor,
                    at,
                    entries: Vec::new(),
                    merged: Vec::new(),
                    slot: KeySlot::Empty,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { anchor, at, items }) = self.stack.pop() {
                    self.complete(Node::new(Value::Seq(items), at), anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    anchor,
                    at,
                    entries,
                    merged,
                    ..
                }) = self.stack.pop()
                {
                    // The parser reports a block mapping's start oddly; its first key is where
                    // a reader looks for it.
                    let at = entries.first().map_or(at, |e| e.key_at);
                    let entries = apply_merges(entries, merged);
                    self.complete(Node::new(Value::Map(entries), at), anchor);
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// `<<` merges as PyYAML does them: merged keys come first, earlier sources win over later ones,
/// and keys written in the mapping itself win over all of them.
fn apply_merges(own: Vec<Entry>, merged: Vec<Node>) -> Vec<Entry> {
    if merged.is_empty() {
        return own;
    }
    let mut out: Vec<Entry> = Vec::new();
    for source in merged {
        if let Value::Map(entries) = source.value {
            for e in entries {
                let overridden = own.iter().any(|o| o.key == e.key);
                let seen = out.iter().any(|o| o.key == e.key);
                if !overridden && !seen {
                    out.push(e);
                }
            }
        }
    }
    out.extend(own);
    out
}

struct Yaml11Patterns {
    boolean: Regex,
    int: Regex,
    float: Regex,
    null: Regex,
}

fn patterns() -> &'static Yaml11Patterns {
    static PATTERNS: OnceLock<Yaml11Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| Yaml11Patterns {
        boolean: re(r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$"),
        int: re(
            r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$",
        ),
        float: re(
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        ),
        null: re(r"^(?:~|null|Null|NULL|)$"),
    })
}

fn re(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(r) => r,
        // The patterns are constants checked by the tests below.
        Err(e) => panic!("built-in YAML pattern does not compile: {e}"),
    }
}

/// Resolves an untagged plain scalar the way PyYAML's `SafeLoader` does (YAML 1.1).
pub(crate) fn resolve_plain(text: &str) -> Value {
    let p = patterns();
    if p.null.is_match(text) {
        return Value::Null;
    }
    if p.boolean.is_match(text) {
        let truthy = matches!(
            text,
            "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON"
        );
        return Value::Bool(truthy);
    }
    if p.int.is_match(text) {
        if let Some(i) = yaml11_int(text) {
            return Value::Int(i);
        }
        // Larger than 64 bits: keep the number, as a float.
        if let Ok(f) = text.replace('_', "").parse::<f64>() {
            return Value::Float(f);
        }
    }
    if p.float.is_match(text) {
        if let Some(f) = yaml11_float(text) {
            return Value::Float(f);
        }
    }
    Value::Str(text.to_string())
}

fn split_sign(text: &str) -> (i64, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (-1, &text[1..]),
        Some(b'+') => (1, &text[1..]),
        _ => (1, text),
    }
}

fn yaml11_int(text: &str) -> Option<i64> {
    let cleaned = text.replace('_', "");
    let (sign, body) = split_sign(&cleaned);
    let magnitude = if let Some(bin) = body.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if body.contains(':') {
        let mut total: i64 = 0;
        for part in body.split(':') {
            total = total
                .checked_mul(60)?
                .checked_add(part.parse::<i64>().ok()?)?;
        }
        total
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    magnitude.checked_mul(sign)
}

fn yaml11_float(text: &str) -> Option<f64> {
    let cleaned = text.replace('_', "").to_ascii_lowercase();
    let (sign, body) = split_sign(&cleaned);
    let sign = sign as f64;
    if body == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if body == ".nan" {
        return Some(f64::NAN);
    }
    if body.contains(':') {
        let mut total = 0.0;
        for part in body.split(':') {
            total = total * 60.0 + part.parse::<f64>().ok()?;
        }
        return Some(sign * total);
    }
    body.parse::<f64>().ok().map(|f| sign * f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    fn value_of(text: &str) -> Value {
        root(&format!("k: {text}\n"))
            .get("k")
            .unwrap()
            .value
            .clone()
    }

    #[test]
    fn yaml_1_1_booleans_like_pyyaml() {
        for t in ["yes", "Yes", "YES", "true", "True", "on", "ON"] {
            assert_eq!(value_of(t), Value::Bool(true), "{t}");
        }
        for t in ["no", "No", "false", "FALSE", "off", "Off"] {
            assert_eq!(value_of(t), Value::Bool(false), "{t}");
        }
        assert_eq!(value_of("y"), Value::Str("y".into()));
        assert_eq!(value_of("'yes'"), Value::Str("yes".into()));
    }

    #[test]
    fn yaml_1_1_numbers_like_pyyaml() {
        assert_eq!(value_of("360"), Value::Int(360));
        assert_eq!(value_of("-5"), Value::Int(-5));
        assert_eq!(value_of("1_000"), Value::Int(1000));
        assert_eq!(value_of("0644"), Value::Int(0o644));
        assert_eq!(value_of("0x1F"), Value::Int(31));
        assert_eq!(value_of("0b101"), Value::Int(5));
        assert_eq!(value_of("6:00"), Value::Int(360));
        assert_eq!(value_of("08"), Value::Str("08".into()));
        assert_eq!(value_of("10.5"), Value::Float(10.5));
        assert_eq!(value_of("10."), Value::Float(10.0));
        assert_eq!(value_of("1.5e+3"), Value::Float(1500.0));
        // PyYAML needs a dot for a float: `1e3` is a string.
        assert_eq!(value_of("1e3"), Value::Str("1e3".into()));
        assert_eq!(value_of(".inf"), Value::Float(f64::INFINITY));
        assert_eq!(value_of("'360'"), Value::Str("360".into()));
    }

    #[test]
    fn nulls_like_pyyaml() {
        for t in ["~", "null", "Null", "NULL", ""] {
            assert_eq!(value_of(t), Value::Null, "{t:?}");
        }
        assert_eq!(value_of("nil"), Value::Str("nil".into()));
    }

    #[test]
    fn plain_text_of_non_strings_is_kept() {
        let r = root("password: 0123\n");
        let n = r.get("password").unwrap();
        assert_eq!(n.value, Value::Int(83));
        assert_eq!(n.plain_text.as_deref(), Some("0123"));
    }

    #[test]
    fn tags_force_a_type() {
        assert_eq!(value_of("!!str 123"), Value::Str("123".into()));
        assert_eq!(value_of("!!float 3"), Value::Float(3.0));
        assert!(parse("k: !custom 1\n").is_err());
    }

    #[test]
    fn positions_are_one_based() {
        let r = root("a: 1\nb:\n  c: x\n");
        assert_eq!(r.at, Location { line: 1, column: 1 });
        let b = r.entry("b").unwrap();
        assert_eq!(b.key_at, Location { line: 2, column: 1 });
        let c = b.value.entry("c").unwrap();
        assert_eq!(c.key_at, Location { line: 3, column: 3 });
        assert_eq!(c.value.at, Location { line: 3, column: 6 });
        assert_eq!(b.value.at, Location { line: 3, column: 3 });
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let r = root("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\nlist: [*b]\n");
        let other = r.get("other").unwrap();
        let keys: Vec<&str> = other
            .as_map()
            .unwrap()
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, ["x", "y"]);
        assert_eq!(other.get("y").unwrap().value, Value::Int(3));
        assert_eq!(other.get("x").unwrap().value, Value::Int(1));
        let Value::Seq(items) = &r.get("list").unwrap().value else {
            panic!()
        };
        assert_eq!(items[0].get("y").unwrap().value, Value::Int(2));
    }

    #[test]
    fn merge_list_earlier_source_wins() {
        let r = root("a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n");
        let c = r.get("c").unwrap();
        assert_eq!(c.get("k").unwrap().value, Value::Int(1));
        assert_eq!(c.get("j").unwrap().value, Value::Int(3));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.at, Some(Location { line: 3, column: 1 }));
        assert!(err.message.contains("duplicate key 'a'"), "{}", err.message);
        assert!(err.message.contains("line 1"), "{}", err.message);
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1\nb: 2\n").unwrap_err();
        assert!(err.at.is_some());
        assert!(
            err.message.starts_with("YAML syntax error"),
            "{}",
            err.message
        );
    }

    #[test]
    fn several_documents_are_rejected() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("single YAML document"));
    }

    #[test]
    fn empty_text_is_no_document() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn python_reprs() {
        assert_eq!(
            root("k: [1, 'a', ~, yes, 2.0]\n")
                .get("k")
                .unwrap()
                .py_repr(),
            "[1, 'a', None, True, 2.0]"
        );
        assert_eq!(py_str_repr("it's"), "\"it's\"");
        assert_eq!(
            root("k: {tool: 5}\n").get("k").unwrap().py_repr(),
            "{'tool': 5}"
        );
    }

    #[test]
    fn same_value_compares_like_python() {
        let r = root("a: 10\nb: 10.0\nc: [1]\nd: [1]\ne: '10'\n");
        assert!(r.get("a").unwrap().same_value(r.get("b").unwrap()));
        assert!(r.get("c").unwrap().same_value(r.get("d").unwrap()));
        assert!(!r.get("a").unwrap().same_value(r.get("e").unwrap()));
    }
}
