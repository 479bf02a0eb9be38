//! Helpers for end-to-end tests of the built daemon with OpenCode agents: each test gets an
//! [`OpencodeHome`] (its own HOME — so its own runtime directory — XDG dirs seeded so OpenCode
//! stays offline), a `MockOpenAI` on a private tokio runtime, and runs the real binary with
//! the daemon's environment pointing OpenCode at the mock through `OPENCODE_CONFIG_CONTENT`
//! (which the gateway must merge into, not replace).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use acg_testkit::agents::{opencode_binary, opencode_provider_config, OpencodeHome};
use acg_testkit::openai::{MockOpenAI, RecordedRequest, Reply};
use serde_json::{json, Value};

pub use crate::common::{alive, wait_for, wait_until, Run, BIN};

/// Generous deadline for anything involving the daemon, a sidecar start or an agent turn
/// (a loaded 2-core box; the sidecar is a 185 MB Bun binary).
pub const SLOW: Duration = Duration::from_secs(240);

/// One isolated world: an OpenCode home (HOME, XDG dirs, work dir) and a mock model API.
pub struct OcWorld {
    pub home: OpencodeHome,
    pub mock: MockOpenAI,
    rt: tokio::runtime::Runtime,
    env: Vec<(String, String)>,
}

impl OcWorld {
    /// A fresh world; the mock answers as [`script_the_model`] says.
    pub fn new() -> OcWorld {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mock = rt.block_on(MockOpenAI::start()).unwrap();
        let home = OpencodeHome::new().unwrap();
        // The daemon's environment is what its sidecars inherit.
        let mut env = home.env();
        env.push((
            "OPENCODE_CONFIG_CONTENT".into(),
            opencode_provider_config(&mock.base_url()).to_string(),
        ));
        let world = OcWorld {
            home,
            mock,
            rt,
            env,
        };
        script_the_model(&world);
        world
    }

    /// The environment the daemon runs with (its sidecars inherit it).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The agents' working directory.
    pub fn work(&self) -> PathBuf {
        self.home.work()
    }

    /// `$HOME/.agent-chat-gateway`.
    pub fn runtime_dir(&self) -> PathBuf {
        self.home.home().join(".agent-chat-gateway")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.runtime_dir().join("gateway.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.runtime_dir().join("gateway.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// The pinned opencode binary.
    pub fn opencode(&self) -> PathBuf {
        opencode_binary().unwrap_or_else(|e| panic!("{e}"))
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
            .current_dir(self.work())
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run(self.cmd(args).output().unwrap())
    }

    /// Starts the daemon; returns its `start` output (which must be a success, maybe degraded).
    pub fn start(&self) -> String {
        let run = self.run(&["start"]);
        assert_eq!(run.code(), 0, "start failed: {run:?}\nlog:\n{}", self.log());
        run.stdout()
    }

    /// Stops the daemon and insists it and its agents' processes are gone.
    pub fn stop(&self) {
        let run = self.run(&["stop"]);
        assert_eq!(run.code(), 0, "stop failed: {run:?}\nlog:\n{}", self.log());
        assert!(run.stdout().contains("Gateway stopped"), "{run:?}");
        assert!(
            wait_for(SLOW, || self.agent_processes().is_empty()),
            "agent processes left after stop: {:?}",
            self.agent_processes()
        );
    }

    /// `status` output.
    pub fn status(&self) -> String {
        let run = self.run(&["status"]);
        assert_eq!(run.code(), 0, "status failed: {run:?}");
        run.stdout()
    }

    /// `list` output lines.
    pub fn list(&self) -> Vec<String> {
        let run = self.run(&["list"]);
        assert_eq!(run.code(), 0, "list failed: {run:?}");
        run.stdout().lines().map(str::to_string).collect()
    }

    /// One control-socket request (for the JSON the CLI prints from).
    pub fn control(&self, request: &Value) -> Value {
        use std::io::{BufRead, BufReader, Write};
        let mut stream =
            std::os::unix::net::UnixStream::connect(self.runtime_dir().join("control.sock"))
                .unwrap();
        stream.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Injects `text` into a watcher as `from` (an owner unless `guest`).
    pub fn inject(&self, watcher: &str, text: &str, from: &str, guest: bool) {
        let mut args = vec!["inject", watcher, "--from", from];
        if guest {
            args.push("--guest");
        }
        args.push("--");
        args.push(text);
        let run = self.run(&args);
        assert_eq!(run.code(), 0, "inject failed: {run:?}");
    }

    /// What the gateway posted to a script room, oldest first.
    pub fn texts(&self, room: &str) -> Vec<String> {
        let path = self
            .runtime_dir()
            .join("script")
            .join("local")
            .join(format!("{room}.jsonl"));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|m| m["text"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Waits until at least `n` messages in the room contain `needle`; returns the `n`th.
    pub fn wait_for_nth(&self, room: &str, needle: &str, n: usize) -> String {
        wait_until(SLOW, || {
            self.texts(room)
                .into_iter()
                .filter(|t| t.contains(needle))
                .nth(n - 1)
        })
        .unwrap_or_else(|| {
            panic!(
                "no message #{n} containing {needle:?} in room {room}: {:?}\nlog:\n{}",
                self.texts(room),
                self.log()
            )
        })
    }

    /// Waits for the `n`th permission request in the room and returns its text and id.
    pub fn nth_request(&self, room: &str, n: usize) -> (String, String) {
        let text = self.wait_for_nth(room, "🔐 **Permission required**", n);
        let id = request_id(&text);
        (text, id)
    }

    /// The audit trail as JSON records (via the CLI).
    pub fn audit(&self) -> Vec<Value> {
        let run = self.run(&["audit", "--json"]);
        assert_eq!(run.code(), 0, "{run:?}");
        run.stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every tool result the model was sent, oldest first (each text once).
    pub fn tool_results(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for request in self.mock.turn_requests() {
            for result in request.tool_results() {
                if !seen.contains(&result.text) {
                    seen.push(result.text);
                }
            }
        }
        seen
    }

    /// Waits until the model has been sent a tool result containing `needle`.
    pub fn wait_for_tool_result(&self, needle: &str) -> String {
        wait_until(SLOW, || {
            self.tool_results().into_iter().find(|t| t.contains(needle))
        })
        .unwrap_or_else(|| {
            panic!(
                "no tool result containing {needle:?}: {:?}\nlog:\n{}",
                self.tool_results(),
                self.log()
            )
        })
    }

    /// Processes other than the daemon running with this world's HOME (sidecars and tools).
    pub fn agent_processes(&self) -> Vec<u32> {
        crate::common::processes_with_home(&self.home.home(), self.pid())
    }

    /// Blocks on a future on the world's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

impl Drop for OcWorld {
    fn drop(&mut self) {
        // Never leave a daemon or a sidecar behind, even when the test failed.
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

/// The text between `[[` and `]]` after `marker` in `said`.
fn bracketed<'a>(said: &'a str, marker: &str) -> Option<&'a str> {
    let rest = said.split(marker).nth(1)?;
    let rest = rest.trim_start().strip_prefix("[[")?;
    rest.split("]]").next()
}

/// The mock model: "please run [[cmd]]" → a `bash` call of `cmd`; "please read [[path]]" →
/// a `read` of `path`; a tool result → a reply quoting it (`tool said: …`); anything else →
/// `ok`.
pub fn script_the_model(world: &OcWorld) {
    world.mock.respond_with(|req: &RecordedRequest| {
        let last = req.messages().last()?;
        if last["role"] == "tool" {
            let text = req
                .tool_results()
                .last()
                .map(|r| r.text.clone())
                .unwrap_or_default();
            return Some(Reply::text(format!("tool said: {text}")));
        }
        let said = req.last_user_text().unwrap_or_default();
        if let Some(command) = bracketed(&said, "please run") {
            return Some(Reply::tool_call(
                "bash",
                json!({"command": command, "description": "run the command"}),
            ));
        }
        if let Some(path) = bracketed(&said, "please read") {
            return Some(Reply::tool_call("read", json!({"filePath": path})));
        }
        Some(Reply::text("ok"))
    });
}

/// The id in a permission request message.
pub fn request_id(text: &str) -> String {
    let id = text
        .split("`[")
        .nth(1)
        .and_then(|rest| rest.split("]`").next())
        .unwrap_or_default()
        .to_string();
    assert_eq!(id.len(), 4, "{text}");
    id
}

/// The NUL-separated `/proc/<pid>/<file>` (cmdline, environ) as strings.
pub fn proc_strings(pid: u32, file: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// `path` as YAML-safe text (single-quoted).
pub fn yaml_path(path: &Path) -> String {
    format!("'{}'", path.display())
}
