//! `config validate`: everything [`crate::load`] checks, plus the checks that only make sense
//! before a start — persisted watcher state that the config no longer names, and (`--lint`)
//! values that could simply be deleted because they restate a built-in default or the value the
//! entry already inherits from its template.
//!
//! The report renders the way the 0.5.x CLI printed it (`✓ <path>: valid — N watcher(s)` or
//! `✗ <path>: N error(s)` followed by one `  - <error>` line each), so scripts that read that
//! output keep working; each error line now carries its `file:line:col` location too.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::{ConfigIssue, Location};
use crate::load::{self, Env, Outcome};
use crate::templates::Templates;
use crate::yaml::{Node, Value};

/// The result of validating one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationReport {
    /// The file, as the caller named it (used in the summary line).
    pub path: PathBuf,
    /// Every error (the file cannot be used while there is one).
    pub errors: Vec<ConfigIssue>,
    /// Things that work but are probably not what the user meant.
    pub warnings: Vec<ConfigIssue>,
    /// Whether lint was asked for (the report then says so even when nothing was found).
    pub lint_requested: bool,
    /// Lint findings: values that can be deleted without changing behaviour.
    pub lint: Vec<ConfigIssue>,
    /// Watchers after `rooms:` expansion (those that loaded).
    pub watcher_count: usize,
    /// Entries under `watchers:` before expansion.
    pub entry_count: usize,
}

impl ValidationReport {
    /// True when the file can be loaded.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// The exit status the CLI should use: 0 when valid, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.is_valid() {
            0
        } else {
            1
        }
    }

    /// The summary line and error lines (what the 0.5.x CLI printed first; errors went to stderr).
    pub fn render_summary(&self) -> String {
        let path = self.path.display();
        if self.is_valid() {
            let mut line = format!("✓ {path}: valid — {} watcher(s)", self.watcher_count);
            if self.entry_count != 0 && self.entry_count != self.watcher_count {
                line.push_str(&format!(" (expanded from {} entries)", self.entry_count));
            }
            line
        } else {
            let mut out = format!("✗ {path}: {} error(s)", self.errors.len());
            for e in &self.errors {
                out.push_str(&format!("\n  - {e}"));
            }
            out
        }
    }

    /// Warnings (`  ⚠ ...`) and, when asked for, the lint section.
    pub fn render_details(&self) -> String {
        let mut lines: Vec<String> = self.warnings.iter().map(|w| format!("  ⚠ {w}")).collect();
        if self.lint_requested {
            if self.lint.is_empty() {
                lines.push("\nlint: no redundant defaults found".to_string());
            } else {
                lines.push(format!("\n{} lint finding(s):", self.lint.len()));
                lines.extend(self.lint.iter().map(|f| format!("  - {f}")));
            }
        }
        lines.join("\n")
    }

    /// The whole report as the CLI prints it (summary, warnings, lint), without a final newline.
    pub fn render(&self) -> String {
        let details = self.render_details();
        if details.is_empty() {
            self.render_summary()
        } else {
            format!("{}\n{details}", self.render_summary())
        }
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// Validates the file at `path`; see the module doc. `runtime_dir` (usually
/// `~/.agent-chat-gateway`) enables the check of `state.<connector>.json` files.
pub(crate) fn validate_with(
    path: &Path,
    lint: bool,
    runtime_dir: Option<&Path>,
    env: &Env,
) -> ValidationReport {
    let outcome = match crate::read_config_text(path) {
        Ok(text) => load::load_text(path, &text, env),
        Err(issue) => {
            return ValidationReport {
                path: path.to_path_buf(),
                errors: vec![issue],
                warnings: Vec::new(),
                lint_requested: lint,
                lint: Vec::new(),
                watcher_count: 0,
                entry_count: 0,
            }
        }
    };
    let mut warnings = outcome.warnings.clone();
    if let (Some(dir), true) = (runtime_dir, outcome.errors.is_empty()) {
        warnings.extend(orphaned_state(path, &outcome, dir));
    }
    let findings = if lint {
        lint_findings(path, &outcome)
    } else {
        Vec::new()
    };
    ValidationReport {
        path: path.to_path_buf(),
        errors: outcome.errors.clone(),
        warnings,
        lint_requested: lint,
        lint: findings,
        watcher_count: outcome.watchers.len(),
        entry_count: outcome.watcher_entries,
    }
}

/// Watcher names in each connector's `state.<connector>.json` that the config no longer has:
/// their session and pause state is dropped at the next start.
fn orphaned_state(path: &Path, outcome: &Outcome, runtime_dir: &Path) -> Vec<ConfigIssue> {
    let mut configured: HashMap<&str, HashSet<&str>> = HashMap::new();
    for w in &outcome.watchers {
        configured
            .entry(w.connector.as_str())
            .or_default()
            .insert(w.name.as_str());
    }
    let mut out = Vec::new();
    for (i, c) in outcome.connectors.iter().enumerate() {
        let file = runtime_dir.join(format!("state.{}.json", c.name));
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let names = configured.get(c.name.as_str());
        for stored in state_watcher_names(&json) {
            if names.is_some_and(|n| n.contains(stored.as_str())) {
                continue;
            }
            out.push(ConfigIssue {
                file: path.to_path_buf(),
                location: None,
                entry: Some(format!("connectors[{i}] ({})", c.name)),
                field: None,
                message: format!(
                    "Connector '{}': {} remembers watcher '{stored}', which this config no longer defines — its session and pause state will be dropped at the next start (give a watcher that explicit 'name:' to keep it).",
                    c.name,
                    file.display()
                ),
            });
        }
    }
    out
}

/// Watcher names stored in a state file, including the legacy `watcher_id` records.
fn state_watcher_names(json: &serde_json::Value) -> Vec<String> {
    let Some(records) = json.get("watchers").and_then(|w| w.as_array()) else {
        return Vec::new();
    };
    records
        .iter()
        .filter_map(|r| {
            let field = |k: &str| r.get(k).and_then(|v| v.as_str()).map(str::to_string);
            field("watcher_name").or_else(|| {
                r.get("watcher_id")?;
                field("room_name").or_else(|| field("watcher_id"))
            })
        })
        .collect()
}

/// A built-in default, as lint compares it with a written value.
#[derive(Debug, Clone, Copy)]
enum Builtin {
    Bool(bool),
    Num(f64),
    Str(&'static str),
    EmptyList,
    Null,
}

impl Builtin {
    fn matches(self, node: &Node) -> bool {
        match (self, &node.value) {
            (Builtin::Bool(d), Value::Bool(v)) => d == *v,
            (Builtin::Num(d), Value::Int(v)) => d == *v as f64,
            (Builtin::Num(d), Value::Float(v)) => d == *v,
            (Builtin::Str(d), Value::Str(v)) => d == v,
            (Builtin::EmptyList, Value::Seq(v)) => v.is_empty(),
            (Builtin::Null, Value::Null) => true,
            _ => false,
        }
    }
}

const AGENT_DEFAULTS: &[(&str, Builtin)] = &[
    ("session_prefix", Builtin::Str("agent-chat")),
    ("lazy_instruction_loading", Builtin::Bool(true)),
    ("new_session_args", Builtin::EmptyList),
    ("context_inject_files", Builtin::EmptyList),
    ("owner_allowed_tools", Builtin::EmptyList),
    ("guest_allowed_tools", Builtin::EmptyList),
    ("timeout", Builtin::Num(360.0)),
    ("permissions.enabled", Builtin::Bool(false)),
    ("permissions.timeout", Builtin::Num(300.0)),
    ("permissions.skip_owner_approval", Builtin::Bool(false)),
    ("permissions.require_other_owner", Builtin::Bool(false)),
];

const WATCHER_DEFAULTS: &[(&str, Builtin)] = &[
    ("context_inject_files", Builtin::EmptyList),
    ("online_notification", Builtin::Null),
    ("offline_notification", Builtin::Null),
    ("session_id", Builtin::Null),
    ("history_handoff.enabled", Builtin::Bool(true)),
    ("history_handoff.fetch_count", Builtin::Num(50.0)),
    ("history_handoff.verbatim_tail", Builtin::Num(15.0)),
];

const CHAT_CONNECTOR_DEFAULTS: &[(&str, Builtin)] = &[
    ("context_inject_files", Builtin::EmptyList),
    ("reply_in_thread", Builtin::Bool(false)),
    ("permission_reply_in_thread", Builtin::Bool(true)),
    ("require_mention", Builtin::Bool(true)),
    ("filter_sender", Builtin::Bool(true)),
    ("timezone", Builtin::Str("")),
    ("allowed_users.owners", Builtin::EmptyList),
    ("allowed_users.guests", Builtin::EmptyList),
    ("attachments.max_file_size_mb", Builtin::Num(10.0)),
    ("attachments.download_timeout", Builtin::Num(30.0)),
    ("attachments.cache_dir", Builtin::Str("agent-chat.cache")),
    (
        "attachments.cache_dir_global",
        Builtin::Str("~/.agent-chat-gateway/attachments"),
    ),
    ("agent_chain.agent_usernames", Builtin::EmptyList),
    ("agent_chain.max_turns", Builtin::Num(5.0)),
    ("agent_chain.ttl_seconds", Builtin::Num(3600.0)),
];

const VOICE_CONNECTOR_DEFAULTS: &[(&str, Builtin)] = &[
    ("context_inject_files", Builtin::EmptyList),
    ("port", Builtin::Num(8765.0)),
    ("host", Builtin::Str("0.0.0.0")),
    ("secret", Builtin::Str("")),
    ("timeout", Builtin::Num(45.0)),
];

const TOP_DEFAULTS: &[(&str, Builtin)] = &[
    ("max_queue_depth", Builtin::Num(100.0)),
    ("scheduler.completed_job_ttl_days", Builtin::Num(7.0)),
    ("gateway.drain_timeout", Builtin::Num(30.0)),
];

/// The node at a dotted path inside a mapping.
fn at_path<'n>(map: &'n Node, path: &str) -> Option<(&'n Node, Location)> {
    let mut current = map;
    let mut at = map.at;
    for part in path.split('.') {
        let e = current.entry(part)?;
        at = e.key_at;
        current = &e.value;
    }
    Some((current, at))
}

/// Every leaf (non-mapping value) of a mapping, as (dotted path, value, key position).
fn leaves<'n>(map: &'n Node, prefix: &str, out: &mut Vec<(String, &'n Node, Location)>) {
    for e in map.as_map().unwrap_or_default() {
        let path = if prefix.is_empty() {
            e.key.clone()
        } else {
            format!("{prefix}.{}", e.key)
        };
        if e.value.as_map().is_some() {
            leaves(&e.value, &path, out);
        } else {
            out.push((path, &e.value, e.key_at));
        }
    }
}

/// Collects lint findings for one file.
struct Linter<'a> {
    file: &'a Path,
    findings: Vec<ConfigIssue>,
}

impl Linter<'_> {
    fn finding(&mut self, entry: Option<&str>, field: &str, at: Location, message: String) {
        self.findings.push(ConfigIssue {
            file: self.file.to_path_buf(),
            location: Some(at),
            entry: entry.map(str::to_string),
            field: Some(field.to_string()),
            message,
        });
    }

    /// Flags values of `entry` equal to what it inherits, and (for keys the template does not
    /// set) values equal to the built-in default. A value equal to the default but overriding a
    /// different template value is meaningful and is not flagged.
    fn entry(
        &mut self,
        label: &str,
        entry: &Node,
        templates: &Templates,
        defaults: &[(&str, Builtin)],
    ) {
        let template_name = entry
            .get("inherits")
            .and_then(Node::as_str)
            .filter(|s| !s.is_empty());
        let template = template_name.and_then(|t| templates.items.get(t).map(|n| (t, n)));
        if let Some((t, tnode)) = template {
            let mut own = Vec::new();
            leaves(entry, "", &mut own);
            for (path, value, at) in own {
                if path == "inherits" || path == "description" {
                    continue;
                }
                if let Some((inherited, _)) = at_path(tnode, &path) {
                    if inherited.same_value(value) {
                        let message = format!(
                            "matches the value inherited from {}['{t}'].{path} ({}) — can be omitted from this entry.",
                            templates.key,
                            value.py_repr()
                        );
                        self.finding(Some(label), &path, at, message);
                    }
                }
            }
        }
        for (path, default) in defaults {
            let Some((value, at)) = at_path(entry, path) else {
                continue;
            };
            let inherited = template.is_some_and(|(_, t)| at_path(t, path).is_some());
            if !inherited && default.matches(value) {
                self.finding(Some(label), path, at, restates_default(value));
            }
        }
    }
}

/// The message for a value equal to its built-in default.
fn restates_default(value: &Node) -> String {
    format!(
        "restates the built-in default ({}) — can be omitted.",
        value.py_repr()
    )
}

/// The effective `type` of a raw entry (its own, or its template's).
fn effective_type<'n>(entry: &'n Node, templates: &'n Templates) -> Option<&'n str> {
    entry.get("type").and_then(Node::as_str).or_else(|| {
        let t = entry.get("inherits").and_then(Node::as_str)?;
        templates.items.get(t)?.get("type").and_then(Node::as_str)
    })
}

fn connector_defaults(kind: Option<&str>) -> &'static [(&'static str, Builtin)] {
    match kind {
        Some("rocketchat" | "mattermost") => CHAT_CONNECTOR_DEFAULTS,
        Some("voice") => VOICE_CONNECTOR_DEFAULTS,
        _ => &[("context_inject_files", Builtin::EmptyList)],
    }
}

fn lint_findings(path: &Path, outcome: &Outcome) -> Vec<ConfigIssue> {
    let Some(root) = &outcome.root else {
        return Vec::new();
    };
    let mut linter = Linter {
        file: path,
        findings: Vec::new(),
    };
    let [connector_templates, agent_templates, watcher_templates] = &outcome.templates;
    let none = Templates::default();

    for (path, default) in TOP_DEFAULTS {
        if let Some((value, at)) = at_path(root, path) {
            if default.matches(value) {
                linter.finding(None, path, at, restates_default(value));
            }
        }
    }

    for (name, template) in &connector_templates.items {
        let defaults = connector_defaults(template.get("type").and_then(Node::as_str));
        let label = format!("connector_templates.{name}");
        linter.entry(&label, template, &none, defaults);
    }
    for (name, template) in &agent_templates.items {
        let label = format!("agent_templates.{name}");
        linter.entry(&label, template, &none, AGENT_DEFAULTS);
    }
    for (name, template) in &watcher_templates.items {
        let label = format!("watcher_templates.{name}");
        linter.entry(&label, template, &none, WATCHER_DEFAULTS);
    }

    if let Some(Value::Seq(items)) = root.get("connectors").map(|n| &n.value) {
        for (i, entry) in items.iter().enumerate() {
            let label = match entry.get("name").and_then(Node::as_str) {
                Some(n) => format!("connectors[{i}] ({n})"),
                None => format!("connectors[{i}]"),
            };
            let defaults = connector_defaults(effective_type(entry, connector_templates));
            linter.entry(&label, entry, connector_templates, defaults);
        }
    }
    if let Some(entries) = root.get("agents").and_then(Node::as_map) {
        for e in entries {
            let label = format!("agents.{}", e.key);
            linter.entry(&label, &e.value, agent_templates, AGENT_DEFAULTS);
            // `command` restates the default when it equals the agent's type.
            let kind = e.value.get("type").and_then(Node::as_str).or_else(|| {
                let t = e.value.get("inherits").and_then(Node::as_str)?;
                agent_templates
                    .items
                    .get(t)?
                    .get("type")
                    .and_then(Node::as_str)
            });
            if let (Some(kind), Some(c)) = (kind, e.value.entry("command")) {
                if c.value.as_str() == Some(kind) {
                    let message = format!(
                        "restates the built-in default ({}) — can be omitted.",
                        c.value.py_repr()
                    );
                    linter.finding(Some(&label), "command", c.key_at, message);
                }
            }
        }
        if let (Some(first), Some(d)) = (entries.first(), root.entry("default_agent")) {
            if d.value.as_str() == Some(first.key.as_str()) {
                let message = format!(
                    "restates the built-in default ({}, the first agent) — can be omitted.",
                    d.value.py_repr()
                );
                linter.finding(None, "default_agent", d.key_at, message);
            }
        }
    }
    if let Some(Value::Seq(items)) = root.get("watchers").map(|n| &n.value) {
        for (i, entry) in items.iter().enumerate() {
            let label = match entry.get("name").and_then(Node::as_str) {
                Some(n) => format!("watchers[{i}] ({n})"),
                None => format!("watchers[{i}]"),
            };
            linter.entry(&label, entry, watcher_templates, WATCHER_DEFAULTS);
        }
    }
    linter
        .findings
        .sort_by_key(|f| f.location.map(|l| (l.line, l.column)));
    linter.findings
}
