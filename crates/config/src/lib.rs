//! Loads `config.yaml` in the 0.5.x (v0.3) format into the resolved [`model::Config`].
//!
//! A user's existing file loads as the Python gateway loaded it (YAML 1.1 scalars, templates and
//! `inherits:`, tool presets, `rooms:` expansion with the same derived watcher names, paths
//! relative to the file, no `$VAR` expansion), but more strictly: unknown keys are errors, and
//! every problem in the file is reported at once with its line, not just the first one.
//!
//! Layout:
//! - [`model`]: the resolved config everything downstream reads (shared contract).
//! - `yaml`: YAML text → a tree that keeps line/column of every value (PyYAML-compatible).
//! - `keys`: which keys each section accepts; unknown-key messages with suggestions.
//! - `templates`: `*_templates:` blocks, `inherits:` and the deep merge.
//! - `load`: the tree → [`Config`], collecting [`ConfigIssue`]s.
//! - `names`: watcher names derived from connector + room.
//! - `validate`: [`validate`] for `config validate` (state-file orphans, `--lint`).
//! - `schema`: the file's shape as Rust types → [`json_schema`] (shipped as `config.schema.json`).
//! - [`error`]: [`ConfigIssue`] / [`ConfigErrors`], rendered `file:line:col: entry: field: message`.
//!
//! Entry points: [`load`], [`load_with_warnings`], [`validate`], [`json_schema`], and the
//! runtime-directory helpers [`default_config_path`], [`default_runtime_dir`],
//! [`restrict_permissions`].

pub mod error;
mod keys;
mod load;
pub mod model;
mod names;
mod schema;
mod templates;
mod validate;
mod yaml;

use std::path::{Path, PathBuf};

pub use error::{ConfigErrors, ConfigIssue, Location};
pub use model::*;
pub use validate::ValidationReport;

/// A loaded config together with the warnings found while loading it (settings that have no
/// effect, context files that do not exist yet). The daemon logs the warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The resolved config.
    pub config: Config,
    /// Problems that do not stop the config from being used.
    pub warnings: Vec<ConfigIssue>,
}

/// Loads and resolves the config file at `path`.
///
/// Every error found is returned (in file order), each naming the file, line, entry and field.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_warnings(path).map(|l| l.config)
}

/// Like [`load`], also returning the warnings.
pub fn load_with_warnings(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_with_env(path, &load::Env::from_process())
}

fn load_with_env(path: &Path, env: &load::Env) -> Result<Loaded, ConfigErrors> {
    let text = read_config_text(path).map_err(|e| ConfigErrors { errors: vec![e] })?;
    match load::load_text(path, &text, env).into_config() {
        Ok((config, warnings)) => Ok(Loaded { config, warnings }),
        Err(errors) => Err(ConfigErrors { errors }),
    }
}

/// Checks the config file at `path` the way `agent-chat-gateway config validate` does: all of
/// [`load`]'s checks, warnings for watchers remembered in `<runtime_dir>/state.<connector>.json`
/// that the config no longer defines (when `runtime_dir` is given), and with `lint` the values
/// that could be deleted without changing anything.
pub fn validate(path: &Path, lint: bool, runtime_dir: Option<&Path>) -> ValidationReport {
    validate::validate_with(path, lint, runtime_dir, &load::Env::from_process())
}

/// The JSON Schema of `config.yaml` (draft-07), for editors; the repository ships it as
/// `config.schema.json`.
pub fn json_schema() -> serde_json::Value {
    schema::generate()
}

/// The config file used when none is given: `$ACG_CONFIG` if set, else
/// `~/.agent-chat-gateway/config.yaml`.
pub fn default_config_path() -> PathBuf {
    match std::env::var_os("ACG_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => default_runtime_dir().join("config.yaml"),
    }
}

/// The runtime directory (`~/.agent-chat-gateway`): state files, socket, logs, default config.
pub fn default_runtime_dir() -> PathBuf {
    home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".agent-chat-gateway")
}

/// Makes `path` readable and writable by its owner only (mode 0600): the config holds chat
/// passwords and tokens as plain text.
pub fn restrict_permissions(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

/// `$HOME`, falling back to the password database.
pub(crate) fn home_dir() -> Option<PathBuf> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Some(PathBuf::from(h)),
        _ => std::env::home_dir(),
    }
}

/// Reads the file, turning a missing or unreadable file into a located issue.
pub(crate) fn read_config_text(path: &Path) -> Result<String, ConfigIssue> {
    let issue = |message: String| ConfigIssue {
        file: path.to_path_buf(),
        location: None,
        entry: None,
        field: None,
        message,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(issue(format!("Config file not found: {}", path.display())))
        }
        Err(e) => Err(issue(format!("cannot read the config file: {e}"))),
    }
}

#[cfg(test)]
mod tests;
