//! Finding the pinned agent CLIs and running them offline in an isolated home.
//!
//! `scripts/install-agents.sh` installs the pinned Claude Code CLI into the git-ignored
//! `<workspace>/.tools/npm`. Tests locate it with [`claude_binary`], give each run its own
//! [`TestHome`] (so transcripts and settings never touch the real `~/.claude`), and point it at
//! a [`crate::anthropic::MockAnthropic`] with [`claude_offline_env`].
//!
//! The same for OpenCode: [`opencode_binary`], an [`OpencodeHome`] (isolated HOME and XDG
//! directories, its config directory seeded so no `npm install` runs) and
//! [`opencode_provider_config`] pointing at a [`crate::openai::MockOpenAI`].

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The environment variable that overrides where the Claude CLI is.
pub const CLAUDE_BIN_ENV: &str = "ACG_CLAUDE_BIN";

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// The Claude Code CLI the tests drive: `$ACG_CLAUDE_BIN` if set, else the pinned install in
/// `<workspace>/.tools/npm/node_modules/.bin/claude`. The error says how to install it.
pub fn claude_binary() -> Result<PathBuf, String> {
    locate_claude(std::env::var_os(CLAUDE_BIN_ENV))
}

fn locate_claude(override_path: Option<std::ffi::OsString>) -> Result<PathBuf, String> {
    let (path, origin) = match override_path {
        Some(p) if !p.is_empty() => (PathBuf::from(p), format!("${CLAUDE_BIN_ENV}")),
        _ => (
            workspace_root().join(".tools/npm/node_modules/.bin/claude"),
            "the pinned install".to_owned(),
        ),
    };
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(format!(
            "the Claude Code CLI was not found at {} ({origin}); run `scripts/install-agents.sh` \
             to install the pinned version, or set {CLAUDE_BIN_ENV} to a claude binary",
            path.display()
        ))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The environment that makes the Claude CLI run offline against a mock at `base_url`, with
/// `home` as its `HOME`: dummy key, no telemetry, updater, error reporting or other
/// non-essential traffic, and no retries (an HTTP error from the mock would otherwise cost
/// minutes of back-off). `IS_SANDBOX=1` lets `--dangerously-skip-permissions` run as root.
pub fn claude_offline_env(home: &Path, base_url: &str) -> Vec<(String, String)> {
    [
        ("HOME", home.to_string_lossy().as_ref()),
        ("ANTHROPIC_BASE_URL", base_url),
        ("ANTHROPIC_API_KEY", "dummy"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("DISABLE_TELEMETRY", "1"),
        ("DISABLE_AUTOUPDATER", "1"),
        ("DISABLE_ERROR_REPORTING", "1"),
        ("CLAUDE_CODE_MAX_RETRIES", "0"),
        ("IS_SANDBOX", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A throw-away `HOME` and working directory for one agent run; removed on drop.
#[derive(Debug)]
pub struct TestHome {
    root: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
}

impl TestHome {
    /// Creates `<tmp>/home` and `<tmp>/work` (canonical paths, so the CLI's transcript
    /// folder name is predictable).
    pub fn new() -> io::Result<Self> {
        let root = tempfile::Builder::new().prefix("acg-test-").tempdir()?;
        let base = root.path().canonicalize()?;
        let home = base.join("home");
        let work = base.join("work");
        std::fs::create_dir_all(&home)?;
        std::fs::create_dir_all(&work)?;
        Ok(TestHome { root, home, work })
    }

    /// The directory to use as `HOME`.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The directory to use as the agent's working directory.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// The temp root holding both (for extra files such as system prompts).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// [`claude_offline_env`] for this home.
    pub fn claude_env(&self, base_url: &str) -> Vec<(String, String)> {
        claude_offline_env(&self.home, base_url)
    }

    /// Writes `$HOME/.claude/settings.json` and returns its path.
    pub fn write_claude_settings(&self, settings: &Value) -> io::Result<PathBuf> {
        let dir = self.home.join(".claude");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("settings.json");
        std::fs::write(&path, serde_json::to_vec_pretty(settings)?)?;
        Ok(path)
    }

    /// Lets the CLI run these tools without asking (`permissions.allow` in the user settings),
    /// e.g. `["Bash"]` so a scripted Bash call really runs in `-p` mode.
    pub fn allow_tools(&self, tools: &[&str]) -> io::Result<PathBuf> {
        self.write_claude_settings(&json!({"permissions": {"allow": tools}}))
    }

    /// Where the CLI keeps the transcript of `session_id` started in [`Self::work`].
    pub fn transcript_path(&self, session_id: &str) -> PathBuf {
        self.home
            .join(".claude/projects")
            .join(project_folder_name(&self.work))
            .join(format!("{session_id}.jsonl"))
    }
}

/// The CLI's folder name for a working directory: every non-alphanumeric char becomes `-`.
pub fn project_folder_name(working_directory: &Path) -> String {
    working_directory
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

// --- OpenCode -------------------------------------------------------------------------------

/// The environment variable that overrides where the OpenCode CLI is.
pub const OPENCODE_BIN_ENV: &str = "ACG_OPENCODE_BIN";

/// The `opencode-ai` version `scripts/install-agents.sh` pins (and the plugin version seeded
/// into each [`OpencodeHome`]).
pub const OPENCODE_VERSION: &str = "1.18.33";

/// The OpenCode CLI the tests drive: `$ACG_OPENCODE_BIN` if set, else the pinned install in
/// `<workspace>/.tools/npm/node_modules/.bin/opencode`. The error says how to install it.
pub fn opencode_binary() -> Result<PathBuf, String> {
    locate_opencode(std::env::var_os(OPENCODE_BIN_ENV))
}

fn locate_opencode(override_path: Option<std::ffi::OsString>) -> Result<PathBuf, String> {
    let (path, origin) = match override_path {
        Some(p) if !p.is_empty() => (PathBuf::from(p), format!("${OPENCODE_BIN_ENV}")),
        _ => (
            workspace_root().join(".tools/npm/node_modules/.bin/opencode"),
            "the pinned install".to_owned(),
        ),
    };
    if is_executable(&path) {
        Ok(path)
    } else {
        Err(format!(
            "the OpenCode CLI was not found at {} ({origin}); run `scripts/install-agents.sh` \
             to install opencode-ai@{OPENCODE_VERSION}, or set {OPENCODE_BIN_ENV} to an \
             opencode binary",
            path.display()
        ))
    }
}

/// The environment that keeps OpenCode offline and inside `root` (as laid out by
/// [`OpencodeHome`]): `HOME` and the four XDG directories under it, and every switch that stops
/// a background download (models list, auto-update, sharing, LSP servers) or a read of
/// `~/.claude`. The plugin install it would start in its config directory is prevented by
/// seeding that directory ([`OpencodeHome::new`]), not by a variable: there is none.
pub fn opencode_offline_env(root: &Path) -> Vec<(String, String)> {
    let dir = |sub: &str| root.join(sub).to_string_lossy().into_owned();
    vec![
        ("HOME".to_owned(), dir("home")),
        ("XDG_CONFIG_HOME".to_owned(), dir("xdg/config")),
        ("XDG_DATA_HOME".to_owned(), dir("xdg/data")),
        ("XDG_CACHE_HOME".to_owned(), dir("xdg/cache")),
        ("XDG_STATE_HOME".to_owned(), dir("xdg/state")),
        ("OPENCODE_DISABLE_MODELS_FETCH".to_owned(), "1".to_owned()),
        ("OPENCODE_DISABLE_AUTOUPDATE".to_owned(), "1".to_owned()),
        ("OPENCODE_DISABLE_SHARE".to_owned(), "1".to_owned()),
        ("OPENCODE_DISABLE_CLAUDE_CODE".to_owned(), "1".to_owned()),
        ("OPENCODE_DISABLE_LSP_DOWNLOAD".to_owned(), "1".to_owned()),
    ]
}

/// The provider id and model [`opencode_provider_config`] configures (`mock/mock-model`).
pub const OPENCODE_MOCK_MODEL: &str = "mock/mock-model";

/// An OpenCode config (`opencode.json` / `OPENCODE_CONFIG_CONTENT`) whose only provider is an
/// OpenAI-compatible server at `base_url` (e.g. [`crate::openai::MockOpenAI::base_url`]), used
/// for both the main and the small (title) model, with updates and sharing off.
pub fn opencode_provider_config(base_url: &str) -> Value {
    json!({
        "autoupdate": false,
        "share": "disabled",
        "model": OPENCODE_MOCK_MODEL,
        "small_model": OPENCODE_MOCK_MODEL,
        "enabled_providers": ["mock"],
        "provider": {
            "mock": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Mock",
                "options": {"baseURL": base_url, "apiKey": "dummy"},
                "models": {
                    "mock-model": {
                        "name": "Mock",
                        "tool_call": true,
                        "limit": {"context": 128000, "output": 4096}
                    }
                }
            }
        }
    })
}

/// A throw-away home for one OpenCode server: `home/`, `work/` and `xdg/{config,data,cache,
/// state}` under a temp root (removed on drop), with the config directory pre-seeded so OpenCode
/// finds its plugin package already "installed" and never runs `npm install` at start.
#[derive(Debug)]
pub struct OpencodeHome {
    root: tempfile::TempDir,
    base: PathBuf,
}

impl OpencodeHome {
    /// Creates the directories (canonical paths) and seeds `xdg/config/opencode` with
    /// `node_modules/@opencode-ai/plugin`, a `package.json` and a `package-lock.json` that list
    /// it: OpenCode installs into a config directory only when `node_modules` is missing or the
    /// lock file lacks a dependency of `package.json`.
    pub fn new() -> io::Result<Self> {
        let root = tempfile::Builder::new().prefix("acg-opencode-").tempdir()?;
        let base = root.path().canonicalize()?;
        for sub in [
            "home",
            "work",
            "xdg/config",
            "xdg/data",
            "xdg/cache",
            "xdg/state",
        ] {
            std::fs::create_dir_all(base.join(sub))?;
        }
        seed_opencode_config_dir(&base.join("xdg/config/opencode"))?;
        Ok(OpencodeHome { root, base })
    }

    /// The temp root holding everything (for extra files such as system prompts).
    pub fn root(&self) -> &Path {
        &self.base
    }

    /// The directory used as `HOME`.
    pub fn home(&self) -> PathBuf {
        self.base.join("home")
    }

    /// The directory to use as the agent's working directory.
    pub fn work(&self) -> PathBuf {
        self.base.join("work")
    }

    /// OpenCode's global config directory (`$XDG_CONFIG_HOME/opencode`).
    pub fn config_dir(&self) -> PathBuf {
        self.base.join("xdg/config/opencode")
    }

    /// OpenCode's data directory (`$XDG_DATA_HOME/opencode`: the SQLite database and logs).
    pub fn data_dir(&self) -> PathBuf {
        self.base.join("xdg/data/opencode")
    }

    /// [`opencode_offline_env`] for this home.
    pub fn env(&self) -> Vec<(String, String)> {
        opencode_offline_env(&self.base)
    }

    /// Writes `opencode.json` into the working directory (project config) and returns its path.
    pub fn write_project_config(&self, config: &Value) -> io::Result<PathBuf> {
        let path = self.work().join("opencode.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config)?)?;
        Ok(path)
    }

    /// Keeps the files (for debugging a failed test) and returns where they are.
    pub fn keep(self) -> PathBuf {
        let _ = self.root.keep();
        self.base
    }
}

/// Makes `dir` look like a config directory whose plugin dependency is installed.
fn seed_opencode_config_dir(dir: &Path) -> io::Result<()> {
    let plugin = dir.join("node_modules/@opencode-ai/plugin");
    std::fs::create_dir_all(&plugin)?;
    let write_json = |path: PathBuf, value: Value| -> io::Result<()> {
        std::fs::write(path, serde_json::to_vec_pretty(&value)?)
    };
    write_json(
        plugin.join("package.json"),
        json!({"name": "@opencode-ai/plugin", "version": OPENCODE_VERSION, "main": "index.js"}),
    )?;
    std::fs::write(plugin.join("index.js"), "export {};\n")?;
    write_json(
        dir.join("package.json"),
        json!({"dependencies": {"@opencode-ai/plugin": OPENCODE_VERSION}}),
    )?;
    write_json(
        dir.join("package-lock.json"),
        json!({
            "name": "opencode",
            "lockfileVersion": 3,
            "requires": true,
            "packages": {
                "": {"dependencies": {"@opencode-ai/plugin": OPENCODE_VERSION}},
                "node_modules/@opencode-ai/plugin": {"version": OPENCODE_VERSION}
            }
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_env_has_every_variable() {
        let env = claude_offline_env(Path::new("/h"), "http://127.0.0.1:9");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/h"));
        assert_eq!(get("ANTHROPIC_BASE_URL"), Some("http://127.0.0.1:9"));
        assert_eq!(get("CLAUDE_CODE_MAX_RETRIES"), Some("0"));
        for k in [
            "ANTHROPIC_API_KEY",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
            "DISABLE_TELEMETRY",
            "DISABLE_AUTOUPDATER",
            "DISABLE_ERROR_REPORTING",
        ] {
            assert!(get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn test_home_layout() {
        let home = TestHome::new().unwrap();
        assert!(home.home().is_dir() && home.work().is_dir());
        home.allow_tools(&["Bash"]).unwrap();
        let settings = std::fs::read_to_string(home.home().join(".claude/settings.json")).unwrap();
        assert!(settings.contains("Bash"));
        let t = home.transcript_path("abc");
        assert!(t.ends_with("abc.jsonl"));
        assert!(!t
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains('/'));
        assert_eq!(project_folder_name(Path::new("/a/b.c_d")), "-a-b-c-d");
    }

    #[test]
    fn a_missing_binary_says_how_to_install_it() {
        let err = locate_claude(Some("/nonexistent/claude".into())).unwrap_err();
        assert!(err.contains("scripts/install-agents.sh"), "{err}");
        assert!(err.contains("/nonexistent/claude"), "{err}");
    }

    #[test]
    fn the_pinned_install_is_found() {
        let path = locate_claude(None).unwrap();
        assert!(path.ends_with(".tools/npm/node_modules/.bin/claude"));
    }

    #[test]
    fn opencode_home_is_seeded_and_offline() {
        let home = OpencodeHome::new().unwrap();
        let config = home.config_dir();
        assert!(config
            .join("node_modules/@opencode-ai/plugin/package.json")
            .is_file());
        let lock: Value =
            serde_json::from_slice(&std::fs::read(config.join("package-lock.json")).unwrap())
                .unwrap();
        assert!(lock["packages"][""]["dependencies"]["@opencode-ai/plugin"].is_string());
        let env = home.env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("HOME"),
            Some(home.home().to_string_lossy().into_owned())
        );
        assert_eq!(
            get("XDG_CONFIG_HOME").map(PathBuf::from),
            config.parent().map(Path::to_path_buf)
        );
        assert_eq!(get("OPENCODE_DISABLE_MODELS_FETCH").as_deref(), Some("1"));
        assert!(home.work().is_dir());
        let provider = opencode_provider_config("http://127.0.0.1:9/v1");
        assert_eq!(
            provider["provider"]["mock"]["options"]["baseURL"],
            "http://127.0.0.1:9/v1"
        );
        home.write_project_config(&provider).unwrap();
        assert!(home.work().join("opencode.json").is_file());
    }

    #[test]
    fn a_missing_opencode_says_how_to_install_it() {
        let err = locate_opencode(Some("/nonexistent/opencode".into())).unwrap_err();
        assert!(err.contains("scripts/install-agents.sh"), "{err}");
        assert!(err.contains("/nonexistent/opencode"), "{err}");
    }

    #[test]
    fn the_pinned_opencode_is_found() {
        let path = locate_opencode(None).unwrap();
        assert!(path.ends_with(".tools/npm/node_modules/.bin/opencode"));
    }
}
