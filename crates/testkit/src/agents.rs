//! Finding the pinned agent CLIs and running them offline in an isolated home.
//!
//! `scripts/install-agents.sh` installs the pinned Claude Code CLI into the git-ignored
//! `<workspace>/.tools/npm`. Tests locate it with [`claude_binary`], give each run its own
//! [`TestHome`] (so transcripts and settings never touch the real `~/.claude`), and point it at
//! a [`crate::anthropic::MockAnthropic`] with [`claude_offline_env`].

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
}
