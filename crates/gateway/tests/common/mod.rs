//! Helpers for end-to-end tests of the built `agent-chat-gateway` binary: each test gets its
//! own `HOME` (so its own runtime directory), a `MockAnthropic` on a private tokio runtime, and
//! runs the real binary with the Claude CLI pointed at the mock.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use acg_testkit::anthropic::MockAnthropic;
use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_agent-chat-gateway");

/// Generous deadline for anything involving the daemon or an agent turn (loaded 2-core box).
pub const SLOW: Duration = Duration::from_secs(120);

/// One isolated world: a home, a work directory, a mock model API.
pub struct World {
    _tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub work: PathBuf,
    pub mock: MockAnthropic,
    rt: tokio::runtime::Runtime,
    env: Vec<(String, String)>,
}

impl World {
    /// A fresh world with the mock answering every turn `ok`.
    pub fn new() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("acg-e2e-")
            .tempdir()
            .unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let home = base.join("home");
        let work = base.join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mock = rt.block_on(MockAnthropic::start()).unwrap();
        // The daemon's environment is inherited by the claude processes it runs, so the
        // offline settings (and HOME) go to the daemon itself.
        let env = acg_testkit::agents::claude_offline_env(&home, &mock.base_url());
        World {
            _tmp: tmp,
            home,
            work,
            mock,
            rt,
            env,
        }
    }

    /// `$HOME/.agent-chat-gateway`.
    pub fn runtime_dir(&self) -> PathBuf {
        self.home.join(".agent-chat-gateway")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.runtime_dir().join("gateway.pid")
    }

    pub fn socket(&self) -> PathBuf {
        self.runtime_dir().join("control.sock")
    }

    pub fn log_file(&self) -> PathBuf {
        self.runtime_dir().join("gateway.log")
    }

    /// The claude binary the tests drive.
    pub fn claude(&self) -> PathBuf {
        acg_testkit::agents::claude_binary().unwrap()
    }

    /// A config with one script connector `local` and one claude agent, plus `watchers`
    /// (YAML list items, already indented by two spaces) and `extra` top-level YAML.
    pub fn config_yaml(&self, watchers: &str, extra: &str) -> String {
        format!(
            "connectors:\n  - name: local\n    type: script\nagents:\n  claude:\n    type: claude\n    command: {claude}\n    working_directory: {work}\n    timeout: 300\nwatchers:\n{watchers}{extra}",
            claude = self.claude().display(),
            work = self.work.display(),
        )
    }

    /// The usual two watchers: `helper` on room `desk` and `pinned` (fixed session) on `pins`.
    pub fn standard_config(&self) -> String {
        self.config_yaml(
            "  - name: helper\n    connector: local\n    room: desk\n  - name: pinned\n    connector: local\n    room: pins\n    session_id: 11111111-2222-3333-4444-555555555555\n",
            "",
        )
    }

    /// Writes the default config file (`<runtime>/config.yaml`).
    pub fn write_config(&self, yaml: &str) -> PathBuf {
        std::fs::create_dir_all(self.runtime_dir()).unwrap();
        let path = self.runtime_dir().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// The binary with this world's environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("ACG_CONFIG")
            .env_remove("ACG_LOG")
            .env_remove("ACG_STOP_TIMEOUT")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.work)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().unwrap())
    }

    /// Runs the binary with `input` on stdin.
    pub fn run_with_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run(child.wait_with_output().unwrap())
    }

    /// Starts the daemon and insists it started cleanly.
    pub fn start(&self) -> Run {
        let run = self.run(&["start"]);
        assert_eq!(run.code(), 0, "start failed: {run:?}\nlog:\n{}", self.log());
        assert!(
            run.stdout().contains("Gateway started successfully."),
            "{run:?}"
        );
        run
    }

    /// Stops the daemon and insists it stopped.
    pub fn stop(&self) -> Run {
        let pid = self.pid();
        let run = self.run(&["stop"]);
        assert_eq!(run.code(), 0, "stop failed: {run:?}\nlog:\n{}", self.log());
        assert!(run.stdout().contains("Gateway stopped"), "{run:?}");
        if let Some(pid) = pid {
            assert!(!alive(pid), "daemon {pid} still alive after stop");
        }
        run
    }

    /// The pid the pid file names.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// The `list` output lines of the watchers (without the `Connector …` lines).
    pub fn list(&self) -> Vec<String> {
        self.list_all()
            .into_iter()
            .filter(|l| !l.starts_with("Connector "))
            .collect()
    }

    /// Every `list` output line, the `Connector <name> (<type>): <state>` lines included.
    pub fn list_all(&self) -> Vec<String> {
        let run = self.run(&["list"]);
        assert_eq!(run.code(), 0, "list failed: {run:?}");
        run.stdout().lines().map(str::to_string).collect()
    }

    /// The `list` line of one watcher.
    pub fn list_line(&self, watcher: &str) -> String {
        let prefix = format!("{watcher}: ");
        self.list()
            .into_iter()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no list line for {watcher}"))
    }

    /// The session id `list` shows for a watcher.
    pub fn session_of(&self, watcher: &str) -> String {
        let line = self.list_line(watcher);
        line.split("session=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("")
            .to_string()
    }

    /// The transcript lines of a script room.
    pub fn transcript(&self, room: &str) -> Vec<Value> {
        let path = self
            .runtime_dir()
            .join("script")
            .join("local")
            .join(format!("{room}.jsonl"));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until the room's transcript has a message whose text contains `needle`.
    pub fn wait_for_reply(&self, room: &str, needle: &str) -> Value {
        let found = wait_until(SLOW, || {
            self.transcript(room)
                .into_iter()
                .find(|m| m["text"].as_str().unwrap_or("").contains(needle))
        });
        found.unwrap_or_else(|| {
            panic!(
                "no reply containing {needle:?} in room {room}; transcript: {:?}\nlog:\n{}",
                self.transcript(room),
                self.log()
            )
        })
    }

    /// Waits until the mock saw at least `n` turn requests.
    pub fn wait_for_turns(&self, n: usize) -> bool {
        self.rt.block_on(self.mock.wait_for_turn_requests(n, SLOW))
    }

    /// Every user text of every turn request the mock saw.
    pub fn prompts_seen(&self) -> Vec<String> {
        self.mock
            .turn_requests()
            .iter()
            .flat_map(|r| r.user_texts())
            .collect()
    }

    /// Processes other than the daemon running with this world's HOME (agent processes).
    pub fn agent_processes(&self) -> Vec<u32> {
        processes_with_home(&self.home, self.pid())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // Never leave a daemon or agent behind, even when the test failed.
        if let Some(pid) = self.pid() {
            if alive(pid) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
        }
        for pid in self.agent_processes() {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if std::thread::panicking() {
            eprintln!("---- gateway.log ----\n{}", self.log());
        }
    }
}

/// A finished run of the binary.
pub struct Run(pub Output);

impl Run {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }
}

/// Live processes whose environment has `HOME=<home>`, other than `daemon`, this test and any
/// `agent-chat-gateway` binary: the agent processes (and their tools) of one test world.
pub fn processes_with_home(home: &Path, daemon: Option<u32>) -> Vec<u32> {
    let needle = format!("HOME={}", home.display());
    acg_proctree::proc_table()
        .into_iter()
        .filter(|p| p.state != 'Z' && p.state != 'X')
        .filter_map(|p| u32::try_from(p.pid).ok())
        .filter(|pid| Some(*pid) != daemon && *pid != std::process::id())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|var| var == needle.as_bytes())
            })
        })
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            !exe.ends_with("agent-chat-gateway")
        })
        .collect()
}

/// True if the process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    i32::try_from(pid)
        .ok()
        .and_then(acg_proctree::read_proc)
        .is_some_and(|p| p.state != 'Z' && p.state != 'X')
}

/// Polls `probe` every 50 ms until it returns `Some`, or `None` after `timeout`.
pub fn wait_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls until `cond` holds; false after `timeout`.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    wait_until(timeout, || cond().then_some(())).is_some()
}

/// A pid that certainly names no process now.
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Sends a signal with `kill(1)`.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Mode bits of a path.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
