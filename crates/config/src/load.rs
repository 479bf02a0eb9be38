//! Turns the YAML tree of `config.yaml` into the resolved [`Config`], collecting every problem.
//!
//! The order of work mirrors the file's meaning: top-level keys, templates and tool presets,
//! connectors, agents, `default_agent`, watchers (with `rooms:` expansion), then cross-entry
//! rules (unique names and sticky session ids). Each entry is checked on its own, so one broken
//! agent does not hide a broken watcher; references between entries (a watcher naming an agent)
//! are checked against every *declared* name, so a broken agent does not also make each of its
//! watchers report "unknown agent".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use crate::error::{ConfigIssue, Location};
use crate::keys::{self, Key};
use crate::model::*;
use crate::names;
use crate::templates::{self, Inheritor, TemplateRules, Templates};
use crate::yaml::{self, Entry, Node, Value};

/// What the loader needs from the outside world, injectable so tests need not touch `$HOME`.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    /// The home directory used for `~` (None: `~` paths are an error).
    pub home: Option<PathBuf>,
}

impl Env {
    /// The process's environment: `$HOME`.
    pub(crate) fn from_process() -> Env {
        Env {
            home: crate::home_dir(),
        }
    }
}

/// Everything the loader found: the pieces it could build, even when some entries failed, and
/// every error and warning. `validate` reports from this; `load` turns it into a [`Config`].
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The config file as an absolute path.
    pub path: PathBuf,
    /// The parsed YAML (None when it could not be read or parsed).
    pub root: Option<Node>,
    /// Connectors that loaded.
    pub connectors: Vec<ConnectorConfig>,
    /// Agents that loaded.
    pub agents: Vec<AgentConfig>,
    /// The resolved default agent ("" when there is none).
    pub default_agent: String,
    /// Watchers that loaded (after expansion).
    pub watchers: Vec<WatcherConfig>,
    /// Number of entries under `watchers:` before expansion.
    pub watcher_entries: usize,
    /// `max_queue_depth`.
    pub max_queue_depth: usize,
    /// `scheduler:`.
    pub scheduler: SchedulerConfig,
    /// `tool_presets:`.
    pub tool_presets: BTreeMap<String, Vec<ToolRule>>,
    /// `gateway:`.
    pub gateway: GatewaySettings,
    /// The three template blocks (connector, agent, watcher), for lint.
    pub templates: [Templates; 3],
    /// Errors, sorted by position.
    pub errors: Vec<ConfigIssue>,
    /// Warnings, sorted by position.
    pub warnings: Vec<ConfigIssue>,
}

impl Outcome {
    /// The resolved config, when there were no errors.
    pub(crate) fn into_config(self) -> Result<(Config, Vec<ConfigIssue>), Vec<ConfigIssue>> {
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        let config = Config {
            path: self.path,
            connectors: self.connectors,
            agents: self.agents,
            default_agent: self.default_agent,
            watchers: self.watchers,
            max_queue_depth: self.max_queue_depth,
            scheduler: self.scheduler,
            tool_presets: self.tool_presets,
            gateway: self.gateway,
        };
        Ok((config, self.warnings))
    }
}

/// Who an error is about: the entry label shown before the field, and the prefix that the
/// 0.5.x messages start with (`Agent 'claude': `).
#[derive(Debug, Clone)]
pub(crate) struct Site {
    /// `agents.claude`, `watchers[2]`, `connectors[0] (rc-home)`; None for top-level keys.
    pub entry: Option<String>,
    /// Start of the 0.5.x-worded messages about this entry.
    pub prefix: String,
}

impl Site {
    /// A top-level key (no entry).
    pub(crate) fn top() -> Site {
        Site {
            entry: None,
            prefix: String::new(),
        }
    }

    /// An entry with its label and message prefix.
    pub(crate) fn new(entry: String, prefix: String) -> Site {
        Site {
            entry: Some(entry),
            prefix,
        }
    }
}

/// The loader's working state: where the file is and what was found so far.
pub(crate) struct Ctx<'a> {
    file: &'a Path,
    env: &'a Env,
    config_dir: PathBuf,
    errors: Vec<ConfigIssue>,
    warnings: Vec<ConfigIssue>,
}

/// `a.b` from a path prefix and a key (`""` + `k` = `k`).
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The value of `key`, treating an explicit `null` as absent (so `null` means "use the default",
/// which is also what `null` in an entry does to an inherited template value).
fn present<'n>(map: &'n Node, key: &str) -> Option<&'n Node> {
    map.get(key).filter(|n| !n.is_null())
}

impl<'a> Ctx<'a> {
    fn issue(
        &self,
        site: &Site,
        field: Option<&str>,
        at: Option<Location>,
        message: String,
    ) -> ConfigIssue {
        ConfigIssue {
            file: self.file.to_path_buf(),
            location: at,
            entry: site.entry.clone(),
            field: field.map(str::to_string),
            message,
        }
    }

    /// Records an error.
    pub(crate) fn error(
        &mut self,
        site: &Site,
        field: Option<&str>,
        at: Option<Location>,
        message: String,
    ) {
        let issue = self.issue(site, field, at, message);
        self.errors.push(issue);
    }

    /// Records a warning.
    fn warn(&mut self, site: &Site, field: Option<&str>, at: Option<Location>, message: String) {
        let issue = self.issue(site, field, at, message);
        self.warnings.push(issue);
    }

    /// Reports every key of `map` that `table` does not know, descending into nested tables.
    /// `connector_type` names the connector type when the table is a type's own table, so a key
    /// that belongs to another type can say so.
    fn check_keys(
        &mut self,
        site: &Site,
        map: &Node,
        table: &'static [Key],
        path: &str,
        connector_type: Option<&str>,
    ) {
        let Some(entries) = map.as_map() else {
            return;
        };
        for e in entries {
            if keys::find(table, &e.key).is_some() {
                self.check_keys_below(site, e, table, path, connector_type);
                continue;
            }
            let field = join(path, &e.key);
            let other_type = connector_type.and_then(|t| connector_type_with(&field, t));
            let message = match (connector_type, other_type) {
                (Some(t), Some(owner)) => format!(
                    "unknown key '{}' for a {t} connector (it is a {owner} connector setting)",
                    e.key
                ),
                _ => keys::unknown_key_message(&e.key, table),
            };
            self.error(site, Some(&field), Some(e.key_at), message);
        }
    }

    /// Checks the nested mapping of a known key `e` of `table`, if the key has one.
    pub(crate) fn check_keys_below(
        &mut self,
        site: &Site,
        e: &Entry,
        table: &'static [Key],
        path: &str,
        connector_type: Option<&str>,
    ) {
        if let Some(nested) = keys::find(table, &e.key).and_then(|k| k.nested) {
            let below = join(path, &e.key);
            self.check_keys(site, &e.value, nested, &below, connector_type);
        }
    }

    fn type_error(&mut self, site: &Site, field: &str, node: &Node, expected: &str) {
        let message = format!("must be {expected} (got {}).", node.type_name());
        self.error(site, Some(field), Some(node.at), message);
    }

    /// A nested mapping (`permissions:`), or None when absent/null/wrong type (reported).
    fn read_map<'n>(
        &mut self,
        site: &Site,
        map: &'n Node,
        path: &str,
        key: &str,
    ) -> Option<&'n Node> {
        let node = present(map, key)?;
        if node.as_map().is_some() {
            return Some(node);
        }
        self.type_error(site, &join(path, key), node, "a mapping");
        None
    }

    /// A string that names or selects something (no numbers accepted).
    fn read_str(&mut self, site: &Site, map: &Node, path: &str, key: &str) -> Option<String> {
        let node = present(map, key)?;
        match node.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.type_error(site, &join(path, key), node, "a string");
                None
            }
        }
    }

    /// Free text (passwords, prefixes, messages): a plain number or boolean is taken as written,
    /// so `password: 0123` is the password "0123".
    fn read_text(&mut self, site: &Site, map: &Node, path: &str, key: &str) -> Option<String> {
        let node = present(map, key)?;
        match scalar_text(node) {
            Some(s) => Some(s),
            None => {
                self.type_error(site, &join(path, key), node, "a string");
                None
            }
        }
    }

    fn read_bool(&mut self, site: &Site, map: &Node, path: &str, key: &str, default: bool) -> bool {
        let Some(node) = present(map, key) else {
            return default;
        };
        match node.value {
            Value::Bool(b) => b,
            _ => {
                self.type_error(site, &join(path, key), node, "true or false");
                default
            }
        }
    }

    /// A whole number >= `min`.
    fn read_uint(
        &mut self,
        site: &Site,
        map: &Node,
        path: &str,
        key: &str,
        default: u64,
        min: u64,
    ) -> u64 {
        let Some(node) = present(map, key) else {
            return default;
        };
        match node.value {
            Value::Int(i) if i >= 0 && i as u64 >= min => i as u64,
            Value::Int(_) => {
                let message = format!("must be >= {min} (got {}).", node.py_repr());
                self.error(site, Some(&join(path, key)), Some(node.at), message);
                default
            }
            _ => {
                self.type_error(site, &join(path, key), node, "a whole number");
                default
            }
        }
    }

    /// A number of seconds (whole or fractional); `positive` forbids 0.
    fn read_seconds(
        &mut self,
        site: &Site,
        map: &Node,
        path: &str,
        key: &str,
        default: f64,
        positive: bool,
    ) -> f64 {
        let Some(node) = present(map, key) else {
            return default;
        };
        let value = match node.value {
            Value::Int(i) => i as f64,
            Value::Float(f) => f,
            _ => {
                self.type_error(site, &join(path, key), node, "a number of seconds");
                return default;
            }
        };
        let bad = !value.is_finite() || value < 0.0 || (positive && value == 0.0);
        if bad {
            let bound = if positive { "> 0" } else { ">= 0" };
            let message = format!(
                "must be a number of seconds {bound} (got {}).",
                node.py_repr()
            );
            self.error(site, Some(&join(path, key)), Some(node.at), message);
            return default;
        }
        value
    }

    /// A list of free-text strings (usernames, CLI arguments).
    fn read_text_list(&mut self, site: &Site, map: &Node, path: &str, key: &str) -> Vec<String> {
        let Some(node) = present(map, key) else {
            return Vec::new();
        };
        let Value::Seq(items) = &node.value else {
            self.type_error(site, &join(path, key), node, "a list");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match scalar_text(item) {
                Some(s) => out.push(s),
                None => {
                    self.type_error(site, &format!("{}[{i}]", join(path, key)), item, "a string")
                }
            }
        }
        out
    }

    /// `context_inject_files`: a list of paths, resolved against the config file's folder.
    /// Missing files are a warning (the 0.5.x gateway found out only when the watcher started).
    fn read_context_files(&mut self, site: &Site, map: &Node) -> Vec<PathBuf> {
        let Some(node) = present(map, "context_inject_files") else {
            return Vec::new();
        };
        let Value::Seq(items) = &node.value else {
            self.type_error(site, "context_inject_files", node, "a list");
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("context_inject_files[{i}]");
            let raw = match &item.value {
                Value::Null => continue,
                Value::Str(s) if s.is_empty() => continue,
                Value::Str(s) => s,
                _ => {
                    self.type_error(site, &field, item, "a path string");
                    continue;
                }
            };
            match self.resolve_path(raw) {
                Ok(path) => {
                    if !path.is_file() {
                        let message = format!(
                            "context file not found: '{}' (the watcher will fail to start until it exists)",
                            path.display()
                        );
                        self.warn(site, Some(&field), Some(item.at), message);
                    }
                    out.push(path)
                }
                Err(message) => self.error(site, Some(&field), Some(item.at), message),
            }
        }
        out
    }

    /// `~` expanded, relative paths joined onto the config file's folder and normalized
    /// (symlinks resolved when the path exists); absolute paths are kept as written.
    fn resolve_path(&self, raw: &str) -> Result<PathBuf, String> {
        let expanded = if raw == "~" || raw.starts_with("~/") {
            let Some(home) = &self.env.home else {
                return Err(format!("cannot expand '~' in '{raw}': HOME is not set"));
            };
            let rest = raw.trim_start_matches('~').trim_start_matches('/');
            if rest.is_empty() {
                home.clone()
            } else {
                home.join(rest)
            }
        } else {
            PathBuf::from(raw)
        };
        if expanded.is_absolute() {
            return Ok(expanded);
        }
        let joined = self.config_dir.join(expanded);
        Ok(std::fs::canonicalize(&joined).unwrap_or_else(|_| normalize(&joined)))
    }
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The text of a scalar as a string field sees it (plain numbers/booleans as written).
fn scalar_text(node: &Node) -> Option<String> {
    match &node.value {
        Value::Str(s) => Some(s.clone()),
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            Some(node.plain_text.clone().unwrap_or_else(|| node.py_repr()))
        }
        _ => None,
    }
}

/// The connector type other than `current` whose table has the dotted `field`.
fn connector_type_with(field: &str, current: &str) -> Option<&'static str> {
    keys::CONNECTOR_TYPES
        .iter()
        .filter(|(name, _)| *name != current)
        .find(|(_, table)| table_has_path(table, field))
        .map(|(name, _)| *name)
}

fn table_has_path(table: &'static [Key], field: &str) -> bool {
    let mut current = Some(table);
    let mut parts = field.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(key) = current.and_then(|t| keys::find(t, part)) else {
            return false;
        };
        if parts.peek().is_none() {
            return true;
        }
        current = key.nested;
    }
    false
}

/// `Duration` from seconds already checked to be finite and >= 0.
fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

/// Seconds as the 0.5.x messages print them (`360`, `360.5`).
fn fmt_secs(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Names offered in "unknown …" messages: `a, b`, or `(none defined)`.
pub(crate) fn available<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.into_iter().map(String::as_str).collect();
    if names.is_empty() {
        "(none defined)".to_string()
    } else {
        names.join(", ")
    }
}

/// Python's `repr()` of a list of names: `['a', 'b']`.
fn py_list(names: &[String]) -> String {
    let inner: Vec<String> = names.iter().map(|n| yaml::py_str_repr(n)).collect();
    format!("[{}]", inner.join(", "))
}

/// Loads `text` (the content of `path`) into an [`Outcome`].
pub(crate) fn load_text(path: &Path, text: &str, env: &Env) -> Outcome {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let config_dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut ctx = Ctx {
        file: path,
        env,
        config_dir,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let mut out = Outcome {
        path: abs,
        root: None,
        connectors: Vec::new(),
        agents: Vec::new(),
        default_agent: String::new(),
        watchers: Vec::new(),
        watcher_entries: 0,
        max_queue_depth: 100,
        scheduler: SchedulerConfig {
            completed_job_ttl_days: 7,
        },
        tool_presets: BTreeMap::new(),
        gateway: GatewaySettings::default(),
        templates: Default::default(),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    match yaml::parse(text) {
        Err(e) => ctx.error(&Site::top(), None, e.at, e.message),
        Ok(None) => {
            let empty = Node::new(Value::Map(Vec::new()), Location { line: 1, column: 1 });
            load_root(&mut ctx, &empty, &mut out);
        }
        Ok(Some(root)) => {
            if root.as_map().is_some() {
                load_root(&mut ctx, &root, &mut out);
            } else {
                let message = format!(
                    "Config file '{}' must contain a YAML mapping at the top level, got {}.",
                    path.display(),
                    root.type_name()
                );
                ctx.error(&Site::top(), None, Some(root.at), message);
            }
            out.root = Some(root);
        }
    }
    let by_position = |i: &ConfigIssue| i.location.map(|l| (l.line, l.column));
    ctx.errors.sort_by_key(by_position);
    ctx.warnings.sort_by_key(by_position);
    out.errors = ctx.errors;
    out.warnings = ctx.warnings;
    out
}

fn load_root(ctx: &mut Ctx, root: &Node, out: &mut Outcome) {
    let top = Site::top();
    let mut removed = false;
    for e in root.as_map().unwrap_or_default() {
        if let Some((old, new)) = keys::REMOVED_DEFAULTS.iter().find(|(old, _)| *old == e.key) {
            ctx.error(
                &top,
                Some(old),
                Some(e.key_at),
                format!(
                    "config.yaml '{old}:' is no longer supported (removed) — define shared fields under '{new}:' instead and add 'inherits: <template-name>' to each entry that should use them. See docs/migration-0.3.md."
                ),
            );
            removed = true;
        }
    }
    if removed {
        // A 0.2-era file: everything else would be noise until it is migrated.
        return;
    }
    ctx.check_keys(&top, root, keys::TOP, "", None);

    let templates = [
        Templates::parse(
            ctx,
            root,
            &TemplateRules {
                key: "connector_templates",
                table: keys::ANY_CONNECTOR,
                forbidden: keys::CONNECTOR_TEMPLATE_FORBIDDEN,
            },
        ),
        Templates::parse(
            ctx,
            root,
            &TemplateRules {
                key: "agent_templates",
                table: keys::AGENT,
                forbidden: &[],
            },
        ),
        Templates::parse(
            ctx,
            root,
            &TemplateRules {
                key: "watcher_templates",
                table: keys::WATCHER,
                forbidden: keys::WATCHER_TEMPLATE_FORBIDDEN,
            },
        ),
    ];
    out.tool_presets = tool_presets(ctx, root);
    let connector_names = connectors(ctx, root, &templates[0], out);
    let agent_names = agents(ctx, root, &templates[1], out);
    out.default_agent = default_agent(ctx, root, &agent_names);
    watchers(
        ctx,
        root,
        &templates[2],
        &connector_names,
        &agent_names,
        out,
    );
    out.templates = templates;
    out.max_queue_depth = max_queue_depth(ctx, root);
    out.scheduler = scheduler(ctx, root);
    out.gateway = gateway(ctx, root);
}

// ── top-level scalars ────────────────────────────────────────────────────────────────────────

fn max_queue_depth(ctx: &mut Ctx, root: &Node) -> usize {
    let Some(node) = present(root, "max_queue_depth") else {
        return 100;
    };
    let top = Site::top();
    match node.value {
        Value::Int(i) if i >= 0 => usize::try_from(i).unwrap_or(usize::MAX),
        Value::Int(_) => {
            let message = "config.yaml 'max_queue_depth' must be >= 0".to_string();
            ctx.error(&top, Some("max_queue_depth"), Some(node.at), message);
            100
        }
        _ => {
            let message = format!(
                "config.yaml 'max_queue_depth' must be an integer (got {}).",
                node.type_name()
            );
            ctx.error(&top, Some("max_queue_depth"), Some(node.at), message);
            100
        }
    }
}

fn scheduler(ctx: &mut Ctx, root: &Node) -> SchedulerConfig {
    let default = SchedulerConfig {
        completed_job_ttl_days: 7,
    };
    let Some(node) = present(root, "scheduler") else {
        return default;
    };
    let top = Site::top();
    if node.as_map().is_none() {
        let message = format!(
            "config.yaml 'scheduler:' must be a mapping (got {}).",
            node.type_name()
        );
        ctx.error(&top, Some("scheduler"), Some(node.at), message);
        return default;
    }
    match present(node, "completed_job_ttl_days") {
        None => default,
        Some(ttl) => match ttl.value {
            Value::Int(i) if i >= 0 => SchedulerConfig {
                completed_job_ttl_days: i as u64,
            },
            _ => {
                let message =
                    "config.yaml 'scheduler.completed_job_ttl_days' must be a non-negative integer."
                        .to_string();
                ctx.error(
                    &top,
                    Some("scheduler.completed_job_ttl_days"),
                    Some(ttl.at),
                    message,
                );
                default
            }
        },
    }
}

fn gateway(ctx: &mut Ctx, root: &Node) -> GatewaySettings {
    let top = Site::top();
    let Some(node) = ctx.read_map(&top, root, "", "gateway") else {
        return GatewaySettings::default();
    };
    let default = GatewaySettings::default().drain_timeout.as_secs_f64();
    let drain = ctx.read_seconds(&top, node, "gateway", "drain_timeout", default, false);
    GatewaySettings {
        drain_timeout: secs(drain),
    }
}

fn default_agent(ctx: &mut Ctx, root: &Node, agent_names: &[String]) -> String {
    let first = agent_names.first().cloned().unwrap_or_default();
    let Some(node) = present(root, "default_agent") else {
        return first;
    };
    let top = Site::top();
    match node.as_str() {
        Some("") => first,
        Some(name) if agent_names.iter().any(|a| a == name) => name.to_string(),
        Some(name) => {
            if !agent_names.is_empty() {
                let message = format!(
                    "default_agent '{name}' not found in agents: {}",
                    py_list(agent_names)
                );
                ctx.error(&top, Some("default_agent"), Some(node.at), message);
            }
            first
        }
        None => {
            let message = format!(
                "config.yaml 'default_agent' must be a string (got {}).",
                node.type_name()
            );
            ctx.error(&top, Some("default_agent"), Some(node.at), message);
            first
        }
    }
}

// ── tool rules ───────────────────────────────────────────────────────────────────────────────

/// Why a tool rule entry was rejected: the message tail and where.
struct RuleProblem {
    message: String,
    at: Location,
    field: &'static str,
}

/// Compiles a rule's regex the way it will be matched (Python `re`-like, case-insensitive).
fn check_regex(pattern: &str, dotall: bool) -> Result<(), String> {
    let flags = if dotall { "(?is)" } else { "(?i)" };
    fancy_regex::Regex::new(&format!("{flags}{pattern}"))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One inline `{tool, params}` rule.
fn tool_rule(
    ctx: &mut Ctx,
    site: &Site,
    field: &str,
    node: &Node,
) -> Result<ToolRule, RuleProblem> {
    let not_a_rule = || {
        RuleProblem {
        message: format!(
            "Invalid tool rule: {}. Expected a dict with a 'tool' key, e.g. {{tool: Bash, params: 'git .*'}}",
            node.py_repr()
        ),
        at: node.at,
        field: "",
    }
    };
    if node.as_map().is_none() {
        return Err(not_a_rule());
    }
    ctx.check_keys(site, node, keys::TOOL_RULE, field, None);
    let tool = match node.get("tool").and_then(Node::as_str) {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => return Err(not_a_rule()),
    };
    if let Err(e) = check_regex(&tool, false) {
        return Err(RuleProblem {
            message: format!(
                "Invalid regex for 'tool' field {}: {e}",
                yaml::py_str_repr(&tool)
            ),
            at: node.get("tool").map_or(node.at, |n| n.at),
            field: ".tool",
        });
    }
    let params = match present(node, "params") {
        None => None,
        Some(p) => match p.as_str() {
            Some("") => None,
            Some(s) => Some(s.to_string()),
            None => {
                return Err(RuleProblem {
                    message: format!(
                        "Invalid regex for 'params' field {}: expected a string",
                        p.py_repr()
                    ),
                    at: p.at,
                    field: ".params",
                })
            }
        },
    };
    if let Some(p) = &params {
        if let Err(e) = check_regex(p, true) {
            return Err(RuleProblem {
                message: format!(
                    "Invalid regex for 'params' field {}: {e}",
                    yaml::py_str_repr(p)
                ),
                at: node.get("params").map_or(node.at, |n| n.at),
                field: ".params",
            });
        }
    }
    Ok(ToolRule { tool, params })
}

fn tool_presets(ctx: &mut Ctx, root: &Node) -> BTreeMap<String, Vec<ToolRule>> {
    let mut presets = BTreeMap::new();
    let Some(block) = present(root, "tool_presets") else {
        return presets;
    };
    let Some(entries) = block.as_map() else {
        let message = format!(
            "config.yaml 'tool_presets:' must be a mapping (got {}).",
            block.type_name()
        );
        ctx.error(&Site::top(), Some("tool_presets"), Some(block.at), message);
        return presets;
    };
    for e in entries {
        let name = &e.key;
        let site = Site::new(format!("tool_presets.{name}"), String::new());
        let Value::Seq(items) = &e.value.value else {
            let message = format!(
                "tool_presets['{name}'] must be a list of tool rules (got {}).",
                e.value.type_name()
            );
            ctx.error(&site, None, Some(e.value.at), message);
            continue;
        };
        let mut rules = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let field = format!("[{i}]");
            if let Some(s) = item.as_str() {
                let message = format!(
                    "tool_presets['{name}'][{i}]: presets cannot reference another preset ('{s}') — a preset must be a flat list of inline tool rules."
                );
                ctx.error(&site, Some(&field), Some(item.at), message);
                continue;
            }
            match tool_rule(ctx, &site, &field, item) {
                Ok(rule) => rules.push(rule),
                Err(p) => {
                    let message = format!(
                        "tool_presets['{name}']: invalid tool rule at index {i}: {}",
                        p.message
                    );
                    ctx.error(
                        &site,
                        Some(&format!("{field}{}", p.field)),
                        Some(p.at),
                        message,
                    );
                }
            }
        }
        presets.insert(name.clone(), rules);
    }
    presets
}

/// `owner_allowed_tools` / `guest_allowed_tools`: presets expanded in place, rules checked.
fn allowed_tools(
    ctx: &mut Ctx,
    site: &Site,
    agent: &str,
    map: &Node,
    key: &str,
    presets: &BTreeMap<String, Vec<ToolRule>>,
) -> Vec<ToolRule> {
    let Some(node) = present(map, key) else {
        return Vec::new();
    };
    let Value::Seq(items) = &node.value else {
        ctx.type_error(site, key, node, "a list of tool rules or preset names");
        return Vec::new();
    };
    let mut rules = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let field = format!("{key}[{i}]");
        if let Some(preset) = item.as_str() {
            match presets.get(preset) {
                Some(expanded) => rules.extend(expanded.iter().cloned()),
                None => {
                    let available = available(presets.keys());
                    let message = format!(
                        "Agent '{agent}': unknown tool preset '{preset}' in {key}[{i}]. Available presets: {available}"
                    );
                    ctx.error(site, Some(&field), Some(item.at), message);
                }
            }
            continue;
        }
        match tool_rule(ctx, site, &field, item) {
            Ok(rule) => rules.push(rule),
            Err(p) => {
                let message = format!(
                    "Agent '{agent}': invalid tool rule at index {i} in {key}: {}",
                    p.message
                );
                ctx.error(
                    site,
                    Some(&format!("{field}{}", p.field)),
                    Some(p.at),
                    message,
                );
            }
        }
    }
    rules
}

// ── connectors ───────────────────────────────────────────────────────────────────────────────

/// Loads `connectors:`; returns every declared connector name (even of broken entries).
fn connectors(ctx: &mut Ctx, root: &Node, templates: &Templates, out: &mut Outcome) -> Vec<String> {
    let mut declared = Vec::new();
    let top = Site::top();
    let items = match present(root, "connectors") {
        None => None,
        Some(node) => match &node.value {
            Value::Seq(items) if !items.is_empty() => Some(items),
            Value::Seq(_) => None,
            Value::Map(entries) if entries.is_empty() => None,
            _ => {
                let message = format!(
                    "config.yaml 'connectors:' must be a list (got {}).",
                    node.type_name()
                );
                ctx.error(&top, Some("connectors"), Some(node.at), message);
                return declared;
            }
        },
    };
    let Some(items) = items else {
        let at = root.entry("connectors").map(|e| e.key_at);
        let message = "config.yaml must define at least one connector under 'connectors:'";
        ctx.error(&top, Some("connectors"), at, message.to_string());
        return declared;
    };
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(connector) = connector(ctx, i, item, templates, &mut seen, &mut declared) {
            out.connectors.push(connector);
        }
    }
    declared
}

fn connector(
    ctx: &mut Ctx,
    i: usize,
    item: &Node,
    templates: &Templates,
    seen: &mut HashSet<String>,
    declared: &mut Vec<String>,
) -> Option<ConnectorConfig> {
    let mut site = Site::new(format!("connectors[{i}]"), String::new());
    if item.as_map().is_none() {
        let message = format!(
            "Connector entry at index {i} must be a mapping (got {}).",
            item.type_name()
        );
        ctx.error(&site, None, Some(item.at), message);
        return None;
    }
    let errors_before = ctx.errors.len();
    // Name the entry in messages even if `inherits:` fails.
    if let Some(name) = item
        .get("name")
        .and_then(Node::as_str)
        .filter(|n| !n.is_empty())
    {
        site.entry = Some(format!("connectors[{i}] ({name})"));
    }
    let who = Inheritor {
        kind: "Connector entry",
        label: format!("index {i}"),
    };
    let merged = templates::resolve_inherits(ctx, &site, item, templates, &who);
    if let Some(name) = item
        .get("name")
        .and_then(Node::as_str)
        .filter(|n| !n.is_empty())
    {
        declared.push(name.to_string());
    }
    let entry = merged?;

    let name = match present(&entry, "name") {
        Some(n) => match n.as_str() {
            Some("") => None,
            Some(s) => Some(s.to_string()),
            None => {
                let message = format!(
                    "Connector entry at index {i}: 'name' must be a string (got {}).",
                    n.type_name()
                );
                ctx.error(&site, Some("name"), Some(n.at), message);
                return None;
            }
        },
        None => None,
    };
    let Some(name) = name else {
        let message = "Each connector entry must have a 'name' field".to_string();
        ctx.error(&site, Some("name"), Some(entry.at), message);
        ctx.check_keys(&site, &entry, keys::ANY_CONNECTOR, "", None);
        return None;
    };
    site.prefix = format!("Connector '{name}': ");

    let type_node = present(&entry, "type");
    let type_name = match type_node.map(|t| (t, t.as_str())) {
        None | Some((_, Some(""))) => {
            let message = format!("Connector '{name}' must have a 'type' field");
            ctx.error(&site, Some("type"), Some(entry.at), message);
            None
        }
        Some((t, None)) => {
            let message = format!(
                "Connector '{name}': 'type' must be a string (got {}).",
                t.type_name()
            );
            ctx.error(&site, Some("type"), Some(t.at), message);
            None
        }
        Some((t, Some(s))) => {
            if keys::CONNECTOR_TYPES.iter().any(|(n, _)| *n == s) {
                Some(s.to_string())
            } else {
                let message = format!(
                    "Connector '{name}': unknown type '{s}'. Set it to one of: rocketchat, mattermost, voice, script."
                );
                ctx.error(&site, Some("type"), Some(t.at), message);
                None
            }
        }
    };

    if !seen.insert(name.clone()) {
        let message = format!(
            "Duplicate connector name '{name}' found. Each connector must use a unique name."
        );
        let at = entry.get("name").map(|n| n.at);
        ctx.error(&site, Some("name"), at, message);
    }

    let table = keys::CONNECTOR_TYPES
        .iter()
        .find(|(n, _)| Some(*n) == type_name.as_deref())
        .map_or(keys::ANY_CONNECTOR, |(_, t)| t);
    ctx.check_keys(&site, &entry, table, "", type_name.as_deref());
    ctx.read_text(&site, &entry, "", "description");
    let context_inject_files = ctx.read_context_files(&site, &entry);

    let kind = match type_name.as_deref() {
        Some("rocketchat") => Some(ConnectorKind::RocketChat(chat_server(
            ctx, &site, &name, &entry, false,
        ))),
        Some("mattermost") => Some(ConnectorKind::Mattermost(chat_server(
            ctx, &site, &name, &entry, true,
        ))),
        Some("voice") => Some(ConnectorKind::Voice(voice(ctx, &site, &entry))),
        Some("script") => Some(ConnectorKind::Script),
        _ => None,
    };
    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(ConnectorConfig {
        name,
        context_inject_files,
        kind: kind?,
    })
}

/// `scheme://host...`: a scheme and a network location, as Python's `urlparse` sees them.
fn looks_like_url(value: &str) -> bool {
    let Some((scheme, rest)) = value.split_once(':') else {
        return false;
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let Some(after) = rest.strip_prefix("//") else {
        return false;
    };
    let netloc = after.split(['/', '?', '#']).next().unwrap_or("");
    scheme_ok && !netloc.is_empty()
}

fn chat_server(
    ctx: &mut Ctx,
    site: &Site,
    name: &str,
    entry: &Node,
    mattermost: bool,
) -> ChatServerConfig {
    let empty = Node::new(Value::Map(Vec::new()), entry.at);
    let server = ctx.read_map(site, entry, "", "server").unwrap_or(&empty);
    let server_at = entry.get("server").map_or(entry.at, |n| n.at);
    let url = ctx
        .read_text(site, server, "server", "url")
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string();
    let username = ctx
        .read_text(site, server, "server", "username")
        .unwrap_or_default();
    let password = ctx
        .read_text(site, server, "server", "password")
        .unwrap_or_default();
    let team = ctx.read_text(site, server, "server", "team");
    let token = ctx.read_text(site, server, "server", "token");
    let at_of = |key: &str| Some(server.get(key).map_or(server_at, |n| n.at));

    if url.is_empty() {
        let message = format!("Connector '{name}': server.url is empty");
        ctx.error(site, Some("server.url"), at_of("url"), message);
    } else if !looks_like_url(&url) {
        let message = format!(
            "Connector '{name}': server.url ({}) does not look like a URL (expected e.g. 'https://host')",
            yaml::py_str_repr(&url)
        );
        ctx.error(site, Some("server.url"), at_of("url"), message);
    }
    if mattermost {
        if team.as_deref().unwrap_or("").is_empty() {
            let message = format!("Connector '{name}': server.team is empty");
            ctx.error(site, Some("server.team"), at_of("team"), message);
        }
        let has_token = !token.as_deref().unwrap_or("").is_empty();
        let has_login = !username.is_empty() && !password.is_empty();
        if has_token && has_login {
            let message = format!(
                "Connector '{name}': set either server.token or server.username + server.password, not both."
            );
            ctx.error(site, Some("server.token"), at_of("token"), message);
        } else if !has_token && !has_login {
            let message = format!(
                "Connector '{name}': Mattermost needs server.token (a personal access or bot token), or server.username and server.password."
            );
            ctx.error(site, Some("server"), Some(server_at), message);
        }
    } else {
        if username.is_empty() {
            let message = format!("Connector '{name}': server.username is empty");
            ctx.error(site, Some("server.username"), at_of("username"), message);
        }
        if password.is_empty() {
            let message = format!("Connector '{name}': server.password is empty");
            ctx.error(site, Some("server.password"), at_of("password"), message);
        }
    }

    let allowed = ctx
        .read_map(site, entry, "", "allowed_users")
        .unwrap_or(&empty);
    let owners = ctx.read_text_list(site, allowed, "allowed_users", "owners");
    let guests = ctx.read_text_list(site, allowed, "allowed_users", "guests");

    let attach = ctx
        .read_map(site, entry, "", "attachments")
        .unwrap_or(&empty);
    let p = "attachments";
    let max_file_size_mb = ctx.read_seconds(site, attach, p, "max_file_size_mb", 10.0, false);
    let download_timeout = ctx.read_seconds(site, attach, p, "download_timeout", 30.0, true);
    let cache_dir = ctx
        .read_text(site, attach, p, "cache_dir")
        .unwrap_or_else(|| "agent-chat.cache".to_string());
    let cache_dir_global_raw = ctx
        .read_str(site, attach, p, "cache_dir_global")
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "~/.agent-chat-gateway/attachments".to_string());
    let cache_dir_global = match ctx.resolve_path(&cache_dir_global_raw) {
        Ok(path) => path,
        Err(message) => {
            let at = attach.get("cache_dir_global").map(|n| n.at);
            ctx.error(site, Some("attachments.cache_dir_global"), at, message);
            PathBuf::from(cache_dir_global_raw)
        }
    };

    let chain = ctx
        .read_map(site, entry, "", "agent_chain")
        .unwrap_or(&empty);
    let c = "agent_chain";
    let agent_usernames = ctx.read_text_list(site, chain, c, "agent_usernames");
    let max_turns = ctx.read_uint(site, chain, c, "max_turns", 5, 1);
    let ttl = ctx.read_seconds(site, chain, c, "ttl_seconds", 3600.0, false);

    ChatServerConfig {
        url,
        username,
        password,
        team: if mattermost { team } else { None },
        token: if mattermost { token } else { None },
        owners,
        guests,
        attachments: AttachmentSettings {
            max_file_size_mb,
            download_timeout: secs(download_timeout),
            cache_dir,
            cache_dir_global,
        },
        reply_in_thread: ctx.read_bool(site, entry, "", "reply_in_thread", false),
        permission_reply_in_thread: ctx.read_bool(
            site,
            entry,
            "",
            "permission_reply_in_thread",
            true,
        ),
        require_mention: ctx.read_bool(site, entry, "", "require_mention", true),
        filter_sender: ctx.read_bool(site, entry, "", "filter_sender", true),
        agent_chain: AgentChainSettings {
            agent_usernames,
            max_turns: u32::try_from(max_turns).unwrap_or(u32::MAX),
            ttl: secs(ttl),
        },
        timezone: ctx
            .read_str(site, entry, "", "timezone")
            .unwrap_or_default(),
    }
}

fn voice(ctx: &mut Ctx, site: &Site, entry: &Node) -> VoiceConfig {
    let port = match present(entry, "port") {
        None => 8765,
        Some(node) => {
            // The 0.5.x gateway ran `int()` on it, so `port: "8765"` worked; it still does.
            let number = match &node.value {
                Value::Int(i) => Some(*i),
                Value::Str(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match number
                .and_then(|n| u16::try_from(n).ok())
                .filter(|p| *p > 0)
            {
                Some(p) => p,
                None => {
                    let message =
                        format!("must be a port number 1-65535 (got {}).", node.py_repr());
                    ctx.error(site, Some("port"), Some(node.at), message);
                    8765
                }
            }
        }
    };
    VoiceConfig {
        port,
        host: ctx
            .read_text(site, entry, "", "host")
            .unwrap_or_else(|| "0.0.0.0".to_string()),
        secret: ctx.read_text(site, entry, "", "secret").unwrap_or_default(),
        timeout: secs(ctx.read_seconds(site, entry, "", "timeout", 45.0, true)),
    }
}

// ── agents ───────────────────────────────────────────────────────────────────────────────────

/// Loads `agents:`; returns every declared agent name, in file order.
fn agents(ctx: &mut Ctx, root: &Node, templates: &Templates, out: &mut Outcome) -> Vec<String> {
    let top = Site::top();
    let entries = match present(root, "agents") {
        None => &[][..],
        Some(node) => match node.as_map() {
            Some(entries) => entries,
            None => {
                let message = format!(
                    "config.yaml 'agents:' must be a mapping (got {}). Expected a dict of agent names to config blocks.",
                    node.type_name()
                );
                ctx.error(&top, Some("agents"), Some(node.at), message);
                return Vec::new();
            }
        },
    };
    if entries.is_empty() {
        let at = root.entry("agents").map(|e| e.key_at);
        let message = "config.yaml must define at least one agent under 'agents:'".to_string();
        ctx.error(&top, Some("agents"), at, message);
        return Vec::new();
    }
    let presets = out.tool_presets.clone();
    for e in entries {
        if let Some(agent) = agent(ctx, e, templates, &presets) {
            out.agents.push(agent);
        }
    }
    entries.iter().map(|e| e.key.clone()).collect()
}

fn agent(
    ctx: &mut Ctx,
    e: &Entry,
    templates: &Templates,
    presets: &BTreeMap<String, Vec<ToolRule>>,
) -> Option<AgentConfig> {
    let name = e.key.as_str();
    let site = Site::new(format!("agents.{name}"), format!("Agent '{name}': "));
    if e.value.as_map().is_none() {
        let message = format!(
            "Agent '{name}' config must be a mapping (got {}).",
            e.value.type_name()
        );
        ctx.error(&site, None, Some(e.value.at), message);
        return None;
    }
    let errors_before = ctx.errors.len();
    let who = Inheritor {
        kind: "Agent",
        label: name.to_string(),
    };
    let entry = templates::resolve_inherits(ctx, &site, &e.value, templates, &who)?;
    ctx.check_keys(&site, &entry, keys::AGENT, "", None);
    ctx.read_text(&site, &entry, "", "description");

    let kind = agent_kind(ctx, &site, name, &entry);
    let working_directory = agent_working_directory(ctx, &site, name, &entry);
    let command = ctx
        .read_text(&site, &entry, "", "command")
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| kind.map_or("", AgentKind::type_name).to_string());
    let new_session_args = ctx.read_text_list(&site, &entry, "", "new_session_args");
    let session_prefix = ctx
        .read_text(&site, &entry, "", "session_prefix")
        .unwrap_or_else(|| "agent-chat".to_string());
    let lazy_instruction_loading = match present(&entry, "lazy_instruction_loading") {
        None => true,
        Some(n) => match n.value {
            Value::Bool(b) => b,
            _ => {
                let message = format!("Agent '{name}': lazy_instruction_loading must be a boolean");
                ctx.error(&site, Some("lazy_instruction_loading"), Some(n.at), message);
                true
            }
        },
    };
    let context_inject_files = ctx.read_context_files(&site, &entry);
    let owner_allowed_tools =
        allowed_tools(ctx, &site, name, &entry, "owner_allowed_tools", presets);
    let guest_allowed_tools =
        allowed_tools(ctx, &site, name, &entry, "guest_allowed_tools", presets);
    let timeout = ctx.read_seconds(&site, &entry, "", "timeout", 360.0, true);
    let permissions = agent_permissions(ctx, &site, name, &entry, timeout);

    if ctx.errors.len() > errors_before {
        return None;
    }
    Some(AgentConfig {
        name: name.to_string(),
        kind: kind?,
        command,
        working_directory: working_directory?,
        new_session_args,
        session_prefix,
        lazy_instruction_loading,
        context_inject_files,
        owner_allowed_tools,
        guest_allowed_tools,
        timeout: secs(timeout),
        permissions,
    })
}

/// The agent's `type` (None when missing or unusable; reported).
fn agent_kind(ctx: &mut Ctx, site: &Site, name: &str, entry: &Node) -> Option<AgentKind> {
    let node = present(entry, "type");
    let message = match node.map(|t| (t, t.as_str())) {
        Some((_, Some("claude"))) => return Some(AgentKind::Claude),
        Some((_, Some("opencode"))) => return Some(AgentKind::Opencode),
        None | Some((_, Some(""))) => format!(
            "Agent '{name}': type is required (directly or via an inherits: agent_templates entry). Set it to 'claude' or 'opencode'."
        ),
        Some((_, Some(other))) => {
            format!("Agent '{name}': unknown type '{other}'. Set it to 'claude' or 'opencode'.")
        }
        Some((t, None)) => format!(
            "Agent '{name}': type must be a string (got {}).",
            t.type_name()
        ),
    };
    let at = node.map_or(entry.at, |t| t.at);
    ctx.error(site, Some("type"), Some(at), message);
    None
}

fn agent_working_directory(
    ctx: &mut Ctx,
    site: &Site,
    name: &str,
    entry: &Node,
) -> Option<PathBuf> {
    let node = present(entry, "working_directory");
    let raw = match node.map(|n| (n, n.as_str())) {
        None | Some((_, Some(""))) => {
            let message = format!(
                "Agent '{name}': working_directory is required. Set it to the directory where the agent should run."
            );
            ctx.error(site, Some("working_directory"), Some(entry.at), message);
            return None;
        }
        Some((n, None)) => {
            ctx.type_error(site, "working_directory", n, "a path string");
            return None;
        }
        Some((n, Some(s))) => (n, s),
    };
    let (node, raw) = raw;
    let path = match ctx.resolve_path(raw) {
        Ok(p) => p,
        Err(message) => {
            ctx.error(site, Some("working_directory"), Some(node.at), message);
            return None;
        }
    };
    if !path.is_dir() {
        let message = format!(
            "Agent '{name}': working_directory does not exist or is not a directory: '{}'",
            path.display()
        );
        ctx.error(site, Some("working_directory"), Some(node.at), message);
        return None;
    }
    Some(path)
}

fn agent_permissions(
    ctx: &mut Ctx,
    site: &Site,
    name: &str,
    entry: &Node,
    timeout: f64,
) -> PermissionSettings {
    let empty = Node::new(Value::Map(Vec::new()), entry.at);
    let perms = match present(entry, "permissions") {
        None => &empty,
        Some(p) if p.as_map().is_some() => p,
        Some(p) => {
            let message = format!(
                "Agent '{name}': permissions must be a mapping (got {}).",
                p.type_name()
            );
            ctx.error(site, Some("permissions"), Some(p.at), message);
            &empty
        }
    };
    let p = "permissions";
    let enabled = ctx.read_bool(site, perms, p, "enabled", false);
    let perm_timeout = ctx.read_seconds(site, perms, p, "timeout", 300.0, false);
    let skip_owner_approval = ctx.read_bool(site, perms, p, "skip_owner_approval", false);
    let require_other_owner = ctx.read_bool(site, perms, p, "require_other_owner", false);
    if enabled && timeout <= perm_timeout {
        let message = format!(
            "Agent '{name}': timeout ({}s) must be greater than permissions.timeout ({}s). Suggested: set timeout to at least {}s.",
            fmt_secs(timeout),
            fmt_secs(perm_timeout),
            fmt_secs(perm_timeout + 60.0)
        );
        let at = entry.get("timeout").map_or(entry.at, |n| n.at);
        ctx.error(site, Some("timeout"), Some(at), message);
    }
    if skip_owner_approval && !enabled {
        let at = perms.get("skip_owner_approval").map(|n| n.at);
        let message = format!(
            "Agent '{name}': permissions.skip_owner_approval has no effect while permissions.enabled is false."
        );
        ctx.warn(site, Some("permissions.skip_owner_approval"), at, message);
    }
    PermissionSettings {
        enabled,
        timeout: secs(perm_timeout),
        skip_owner_approval,
        require_other_owner,
    }
}

// ── watchers ─────────────────────────────────────────────────────────────────────────────────

fn watchers(
    ctx: &mut Ctx,
    root: &Node,
    templates: &Templates,
    connector_names: &[String],
    agent_names: &[String],
    out: &mut Outcome,
) {
    let Some(node) = present(root, "watchers") else {
        return;
    };
    let Value::Seq(items) = &node.value else {
        if node.as_map().is_some_and(|m| m.is_empty()) {
            return;
        }
        let message = format!(
            "config.yaml 'watchers:' must be a list (got {}).",
            node.type_name()
        );
        ctx.error(&Site::top(), Some("watchers"), Some(node.at), message);
        return;
    };
    out.watcher_entries = items.len();
    let refs = WatcherRefs {
        connector_names,
        agent_names,
        default_agent: out.default_agent.clone(),
    };
    let mut taken: HashSet<String> = HashSet::new();
    // (session id, watcher name) of pinned watchers, to find duplicates.
    let mut pinned: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let Some(expanded) = watcher_entry(ctx, i, item, templates, &refs, &mut taken) else {
            continue;
        };
        for Expanded {
            watcher: w,
            session_at,
            site,
        } in expanded
        {
            if let Some(sid) = &w.session_id {
                if let Some(other) = pinned.get(sid) {
                    let message = format!(
                        "Duplicate sticky session_id '{sid}': watchers '{other}' and '{}' both pin it. Each watcher needs its own session_id.",
                        w.name
                    );
                    ctx.error(&site, Some("session_id"), session_at, message);
                } else {
                    pinned.insert(sid.clone(), w.name.clone());
                }
            }
            out.watchers.push(w);
        }
    }
}

/// What a watcher entry may refer to.
struct WatcherRefs<'a> {
    connector_names: &'a [String],
    agent_names: &'a [String],
    default_agent: String,
}

/// One watcher of an expanded entry, with what the cross-watcher checks need.
struct Expanded {
    watcher: WatcherConfig,
    /// Where its `session_id` is written.
    session_at: Option<Location>,
    /// The entry it came from.
    site: Site,
}

/// One `watchers:` entry → its expanded watchers, or None when the entry is broken.
fn watcher_entry(
    ctx: &mut Ctx,
    i: usize,
    item: &Node,
    templates: &Templates,
    refs: &WatcherRefs,
    taken: &mut HashSet<String>,
) -> Option<Vec<Expanded>> {
    let label = match item.get("name").and_then(Node::as_str) {
        Some(n) if !n.is_empty() => format!("watchers[{i}] ({n})"),
        _ => format!("watchers[{i}]"),
    };
    let prefix = format!("Watcher entry at index {i}");
    let site = Site::new(label, format!("{prefix}: "));
    if item.as_map().is_none() {
        let message = format!("{prefix} must be a mapping (got {}).", item.type_name());
        ctx.error(&site, None, Some(item.at), message);
        return None;
    }
    let errors_before = ctx.errors.len();
    let who = Inheritor {
        kind: "Watcher entry",
        label: format!("index {i}"),
    };
    let entry = templates::resolve_inherits(ctx, &site, item, templates, &who)?;
    ctx.check_keys(&site, &entry, keys::WATCHER, "", None);
    ctx.read_text(&site, &entry, "", "description");

    let rooms = watcher_rooms(ctx, &site, &prefix, &entry);

    let explicit_name = match present(&entry, "name") {
        None => None,
        Some(n) => match n.as_str() {
            Some("") => None,
            Some(s) => Some((s.to_string(), n.at)),
            None => {
                let message = format!("{prefix}: 'name' must be a string (got {}).", n.type_name());
                ctx.error(&site, Some("name"), Some(n.at), message);
                None
            }
        },
    };
    let session_id = match present(&entry, "session_id") {
        None => None,
        Some(n) => match n.as_str() {
            Some("") => None,
            Some(s) => Some((s.to_string(), n.at)),
            None => {
                let message = format!(
                    "{prefix}: 'session_id' must be a string (got {}).",
                    n.type_name()
                );
                ctx.error(&site, Some("session_id"), Some(n.at), message);
                None
            }
        },
    };
    if let Some(rooms) = &rooms {
        if rooms.len() > 1 {
            for (key, value) in [("name", &explicit_name), ("session_id", &session_id)] {
                if let Some((_, at)) = value {
                    let message = format!(
                        "{prefix}: '{key}' can only be set when the entry has exactly one room ({} are listed in 'rooms') — remove '{key}' or split the entry into single-room entries.",
                        rooms.len()
                    );
                    ctx.error(&site, Some(key), Some(*at), message);
                }
            }
        }
    }

    let connector = match present(&entry, "connector") {
        None => refs.connector_names.first().cloned(),
        Some(n) => match n.as_str() {
            Some("") => refs.connector_names.first().cloned(),
            Some(c) if refs.connector_names.iter().any(|x| x == c) => Some(c.to_string()),
            Some(c) => {
                let message = format!("{prefix} references unknown connector '{c}'");
                ctx.error(&site, Some("connector"), Some(n.at), message);
                None
            }
            None => {
                let message = format!(
                    "{prefix}: 'connector' must be a string (got {}).",
                    n.type_name()
                );
                ctx.error(&site, Some("connector"), Some(n.at), message);
                None
            }
        },
    };
    let agent = match present(&entry, "agent") {
        None => Some(refs.default_agent.clone()).filter(|a| !a.is_empty()),
        Some(n) => match n.as_str() {
            Some("") => Some(refs.default_agent.clone()).filter(|a| !a.is_empty()),
            Some(a) if refs.agent_names.iter().any(|x| x == a) => Some(a.to_string()),
            Some(a) => {
                let message = format!("{prefix} references unknown agent '{a}'");
                ctx.error(&site, Some("agent"), Some(n.at), message);
                None
            }
            None => {
                let message = format!(
                    "{prefix}: 'agent' must be a string (got {}).",
                    n.type_name()
                );
                ctx.error(&site, Some("agent"), Some(n.at), message);
                None
            }
        },
    };

    let context_inject_files = ctx.read_context_files(&site, &entry);
    let online_notification = ctx.read_text(&site, &entry, "", "online_notification");
    let offline_notification = ctx.read_text(&site, &entry, "", "offline_notification");
    let empty = Node::new(Value::Map(Vec::new()), entry.at);
    let handoff = ctx
        .read_map(&site, &entry, "", "history_handoff")
        .unwrap_or(&empty);
    let h = "history_handoff";
    let history_handoff = HistoryHandoff {
        enabled: ctx.read_bool(&site, handoff, h, "enabled", true),
        fetch_count: clamp_u32(ctx.read_uint(&site, handoff, h, "fetch_count", 50, 0)),
        verbatim_tail: clamp_u32(ctx.read_uint(&site, handoff, h, "verbatim_tail", 15, 0)),
    };

    let (rooms, connector, agent) = match (rooms, connector, agent) {
        (Some(r), Some(c), Some(a)) if ctx.errors.len() == errors_before => (r, c, a),
        _ => return None,
    };

    // Names are claimed only when the whole entry is good, so a broken entry cannot make a
    // later, valid one look like a duplicate.
    let mut staged: Vec<Expanded> = Vec::new();
    for (room, room_at) in &rooms {
        let name = match &explicit_name {
            Some((n, _)) => n.clone(),
            None => match names::derive_watcher_name(&connector, room) {
                Some(n) => n,
                None => {
                    let message = format!(
                        "{prefix}: cannot derive a watcher name from room {} — set an explicit 'name:' for this entry.",
                        yaml::py_str_repr(room)
                    );
                    ctx.error(&site, Some("room"), Some(*room_at), message);
                    continue;
                }
            },
        };
        let name_at = explicit_name.as_ref().map_or(*room_at, |(_, at)| *at);
        if name.contains('/') {
            let message = format!(
                "Watcher name '{name}' must not contain '/': watcher names are used as file and folder names."
            );
            ctx.error(&site, Some("name"), Some(name_at), message);
            continue;
        }
        let duplicate = taken.contains(&name) || staged.iter().any(|x| x.watcher.name == name);
        if duplicate {
            let origin = if explicit_name.is_some() {
                "set by 'name:'".to_string()
            } else {
                format!("derived from connector '{connector}' and room '{room}'")
            };
            let message = format!(
                "Duplicate watcher name '{name}' found ({origin}). Watcher names must be unique — set an explicit 'name:' to tell them apart."
            );
            ctx.error(&site, Some("name"), Some(name_at), message);
            continue;
        }
        staged.push(Expanded {
            watcher: WatcherConfig {
                name,
                connector: connector.clone(),
                agent: agent.clone(),
                room: room.clone(),
                session_id: session_id.as_ref().map(|(s, _)| s.clone()),
                context_inject_files: context_inject_files.clone(),
                online_notification: online_notification.clone(),
                offline_notification: offline_notification.clone(),
                history_handoff: history_handoff.clone(),
            },
            session_at: session_id.as_ref().map(|(_, at)| *at),
            site: site.clone(),
        });
    }
    if ctx.errors.len() > errors_before {
        return None;
    }
    for x in &staged {
        taken.insert(x.watcher.name.clone());
    }
    Some(staged)
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// `room:` / `rooms:` → the list of (room, position), or None when invalid (reported).
fn watcher_rooms(
    ctx: &mut Ctx,
    site: &Site,
    prefix: &str,
    entry: &Node,
) -> Option<Vec<(String, Location)>> {
    let room = present(entry, "room");
    let rooms = present(entry, "rooms");
    let room_set = room.is_some_and(|r| r.as_str() != Some(""));
    if room_set && rooms.is_some() {
        let message = format!("{prefix}: set either 'room' or 'rooms', not both.");
        ctx.error(site, Some("rooms"), rooms.map(|r| r.at), message);
        return None;
    }
    if let Some(rooms) = rooms {
        let items = match &rooms.value {
            Value::Seq(items) if !items.is_empty() => items,
            _ => {
                let message = format!("{prefix}: 'rooms' must be a non-empty list of room names.");
                ctx.error(site, Some("rooms"), Some(rooms.at), message);
                return None;
            }
        };
        let mut out: Vec<(String, Location)> = Vec::new();
        for (j, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) if !s.is_empty() => out.push((s.to_string(), item.at)),
                _ => {
                    let message = format!("{prefix}: 'rooms' entries must be non-empty strings.");
                    ctx.error(site, Some(&format!("rooms[{j}]")), Some(item.at), message);
                    return None;
                }
            }
        }
        let mut dupes: Vec<String> = out
            .iter()
            .filter(|(r, _)| out.iter().filter(|(x, _)| x == r).count() > 1)
            .map(|(r, _)| r.clone())
            .collect();
        dupes.sort();
        dupes.dedup();
        if !dupes.is_empty() {
            let message = format!(
                "{prefix}: 'rooms' contains duplicate room(s): {}.",
                py_list(&dupes)
            );
            ctx.error(site, Some("rooms"), Some(rooms.at), message);
            return None;
        }
        return Some(out);
    }
    let missing = || format!("{prefix} must have a non-empty 'room' or 'rooms' field");
    let Some(room) = room else {
        ctx.error(site, Some("room"), Some(entry.at), missing());
        return None;
    };
    match room.as_str() {
        Some("") => {
            ctx.error(site, Some("room"), Some(room.at), missing());
            None
        }
        Some(s) => Some(vec![(s.to_string(), room.at)]),
        None => {
            let message = format!(
                "{prefix}: 'room' must be a string (got {}).",
                room.type_name()
            );
            ctx.error(site, Some("room"), Some(room.at), message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_shapes() {
        assert!(looks_like_url("https://chat.example.com"));
        assert!(looks_like_url("http://localhost:3000/path"));
        assert!(!looks_like_url("test"));
        assert!(!looks_like_url("localhost:3000"));
        assert!(!looks_like_url("https:/host"));
        assert!(!looks_like_url("://host"));
    }

    #[test]
    fn seconds_print_like_python_ints() {
        assert_eq!(fmt_secs(360.0), "360");
        assert_eq!(fmt_secs(360.5), "360.5");
    }

    #[test]
    fn table_paths() {
        assert!(table_has_path(keys::MATTERMOST, "server.team"));
        assert!(!table_has_path(keys::ROCKETCHAT, "server.team"));
        assert_eq!(connector_type_with("port", "rocketchat"), Some("voice"));
        assert_eq!(
            connector_type_with("server.token", "rocketchat"),
            Some("mattermost")
        );
        assert_eq!(connector_type_with("bogus", "rocketchat"), None);
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(
            normalize(Path::new("/a/b/../c/./d")),
            PathBuf::from("/a/c/d")
        );
    }
}
