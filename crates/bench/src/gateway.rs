//! A gateway under test, driven the way an operator drives it: `start --config`, `list`,
//! `stop`, each a separate CLI process with the gateway's own `HOME` (both gateways keep
//! their runtime directory in `$HOME/.agent-chat-gateway`). The same [`write_config`] output
//! is used for both.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::procfs;

/// Which implementation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// This repository's Rust gateway.
    Ours,
    /// The Python agent-chat-gateway 0.5.2 from PyPI.
    Reference,
}

impl Flavor {
    /// The column label.
    pub fn label(self) -> &'static str {
        match self {
            Flavor::Ours => "ours",
            Flavor::Reference => "0.5.2",
        }
    }
}

/// What the generated config.yaml contains.
#[derive(Debug, Clone)]
pub struct ConfigSpec<'a> {
    /// `server.url` of the fake.
    pub url: &'a str,
    /// Watched room names.
    pub rooms: &'a [String],
    /// Owners (the senders).
    pub owners: &'a [String],
    /// The agent command (the stub, or the real `claude`).
    pub agent_command: &'a Path,
    /// The agent's working directory.
    pub working_directory: &'a Path,
    /// Turn timeout in seconds.
    pub timeout_secs: u64,
}

fn quoted(s: &str) -> String {
    // A JSON string is a valid YAML double-quoted scalar.
    serde_json::Value::String(s.to_owned()).to_string()
}

/// The config.yaml text both gateways get: one Rocket.Chat connector, one Claude agent, one
/// watcher entry with every room. Everything else is left at the defaults (mention required,
/// sender filter on, permissions off, history hand-off on).
pub fn config_yaml(spec: &ConfigSpec<'_>) -> String {
    let owners: Vec<String> = spec.owners.iter().map(|o| quoted(o)).collect();
    let rooms: Vec<String> = spec.rooms.iter().map(|r| quoted(r)).collect();
    format!(
        "connectors:\n  - name: rc\n    type: rocketchat\n    server:\n      url: {url}\n      \
         username: {bot}\n      password: {pw}\n    allowed_users:\n      owners: [{owners}]\n\
         agents:\n  stub:\n    type: claude\n    command: {cmd}\n    working_directory: {wd}\n    \
         timeout: {timeout}\n\
         watchers:\n  - connector: rc\n    agent: stub\n    rooms: [{rooms}]\n",
        url = quoted(spec.url),
        bot = quoted(crate::world::BOT),
        pw = quoted(crate::world::BOT_PASSWORD),
        owners = owners.join(", "),
        cmd = quoted(&spec.agent_command.to_string_lossy()),
        wd = quoted(&spec.working_directory.to_string_lossy()),
        timeout = spec.timeout_secs,
        rooms = rooms.join(", "),
    )
}

/// Writes [`config_yaml`] to `path`.
pub fn write_config(path: &Path, spec: &ConfigSpec<'_>) -> Result<()> {
    std::fs::write(path, config_yaml(spec)).with_context(|| format!("write {}", path.display()))
}

/// How long a `stop` took.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct StopTiming {
    /// From launching `stop` until the daemon process had exited.
    pub exited: Duration,
    /// Until the `stop` command itself returned.
    pub command: Duration,
}

/// One gateway installation with its own HOME.
#[derive(Debug, Clone)]
pub struct GatewayUnderTest {
    /// Which implementation.
    pub flavor: Flavor,
    /// Its CLI (`agent-chat-gateway`).
    pub exe: PathBuf,
    /// Its HOME (runtime dir = `<home>/.agent-chat-gateway`).
    pub home: PathBuf,
    /// The config file.
    pub config: PathBuf,
    /// Extra environment for the CLI and so the daemon and its agents.
    pub env: Vec<(String, String)>,
}

impl GatewayUnderTest {
    /// The runtime directory.
    pub fn runtime_dir(&self) -> PathBuf {
        self.home.join(".agent-chat-gateway")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .env("HOME", &self.home)
            .env_remove("ACG_CONFIG")
            .env_remove("CLAUDECODE")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `start --config <config>`; returns how long the command took. Fails (with the
    /// output and the log's tail) when it does not exit 0.
    pub fn start(&self) -> Result<Duration> {
        let config = self.config.to_string_lossy().into_owned();
        let begun = Instant::now();
        let out = self
            .command(&["start", "--config", &config])
            .output()
            .with_context(|| format!("cannot run {}", self.exe.display()))?;
        let took = begun.elapsed();
        // The reference's intermediate fork may be left to us (see procfs).
        procfs::reap_orphans();
        if !out.status.success() {
            bail!(
                "{} start failed ({}):\n{}{}\nlog tail:\n{}",
                self.flavor.label(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(40)
            );
        }
        Ok(took)
    }

    /// The daemon's pid from `gateway.pid`.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.runtime_dir().join("gateway.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Runs `list` once; returns its wall time. Fails when it does not exit 0.
    pub fn list(&self) -> Result<Duration> {
        let begun = Instant::now();
        let out = self.command(&["list"]).output()?;
        let took = begun.elapsed();
        if !out.status.success() {
            bail!(
                "{} list failed: {}{}",
                self.flavor.label(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    }

    /// Runs `stop` and times it: until the daemon has exited, and until the command returned.
    pub fn stop(&self) -> Result<StopTiming> {
        let pid = self.pid().context("no pid file: is the gateway running?")?;
        let begun = Instant::now();
        let mut child = self
            .command(&["stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let exited = if procfs::wait_exit(pid, Duration::from_millis(1), Duration::from_secs(120)) {
            begun.elapsed()
        } else {
            self.kill();
            bail!(
                "{} daemon did not exit within 120 s of stop",
                self.flavor.label()
            );
        };
        child.wait()?;
        let command = begun.elapsed();
        procfs::reap_orphans();
        Ok(StopTiming { exited, command })
    }

    /// Last resort: SIGKILL the daemon (when a measurement failed half-way).
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            if let Ok(raw) = libc::pid_t::try_from(pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe {
                    libc::kill(raw, libc::SIGKILL);
                }
                procfs::wait_exit(pid, Duration::from_millis(5), Duration::from_secs(10));
            }
        }
    }

    /// The last `n` lines of the daemon's log (for error reports).
    pub fn log_tail(&self, n: usize) -> String {
        let text =
            std::fs::read_to_string(self.runtime_dir().join("gateway.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated file is a config our own loader accepts, with every room as a watcher.
    #[test]
    fn config_loads_with_every_room() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work dir");
        std::fs::create_dir(&work).unwrap();
        let rooms = vec!["bench-0000".to_string(), "bench-0001".to_string()];
        let owners = vec!["s00".to_string(), "s01".to_string()];
        let path = dir.path().join("config.yaml");
        write_config(
            &path,
            &ConfigSpec {
                url: "http://127.0.0.1:1234",
                rooms: &rooms,
                owners: &owners,
                agent_command: Path::new("/bin/true"),
                working_directory: &work,
                timeout_secs: 60,
            },
        )
        .unwrap();
        let config = acg_config::load(&path).unwrap();
        let names: Vec<&str> = config.watchers.iter().map(|w| w.room.as_str()).collect();
        assert_eq!(names, ["bench-0000", "bench-0001"]);
        assert_eq!(config.agents[0].working_directory, work);
    }
}
