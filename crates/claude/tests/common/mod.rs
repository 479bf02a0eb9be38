//! Shared set-up for the tests that drive the real Claude Code CLI against the test kit's mock
//! Anthropic API, offline, in a throw-away HOME.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acg_claude::proctree::{self, ProcInfo};
use acg_claude::{ClaudeBackend, ClaudeSettings};
use acg_core::{NewSession, TurnRequest};
use acg_testkit::agents::{claude_binary, TestHome};
use acg_testkit::anthropic::MockAnthropic;

/// Generous: the machine is small and shared.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(120);

/// A mock API, an isolated home and a backend wired to both.
pub struct Harness {
    pub mock: MockAnthropic,
    pub home: TestHome,
    pub backend: ClaudeBackend,
}

/// The pinned CLI; fails the test (never skips it) when it is not installed.
pub fn claude() -> PathBuf {
    claude_binary().unwrap_or_else(|e| panic!("{e}"))
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ClaudeSettings)) -> Self {
        let mock = MockAnthropic::start().await.expect("mock starts");
        let home = TestHome::new().expect("temp home");
        let mut settings = ClaudeSettings::new(claude().to_string_lossy());
        settings.extra_env = home.claude_env(&mock.base_url());
        tweak(&mut settings);
        Harness {
            mock,
            home,
            backend: ClaudeBackend::new(settings),
        }
    }

    pub fn new_session(&self) -> NewSession {
        NewSession {
            working_directory: self.home.work().to_path_buf(),
            extra_args: vec![],
            title: Some("agent-chat:test".into()),
            timeout: TURN_TIMEOUT,
        }
    }

    pub fn turn(&self, session_id: &str, prompt: &str) -> TurnRequest {
        TurnRequest {
            session_id: session_id.to_owned(),
            prompt: prompt.to_owned(),
            working_directory: self.home.work().to_path_buf(),
            timeout: TURN_TIMEOUT,
            attachments: vec![],
            env: BTreeMap::from([("ACG_ROLE".to_owned(), "owner".to_owned())]),
            system_prompt_file: None,
            watcher: Some("test-watcher".into()),
        }
    }

    /// Creates a session (answered by the mock's default reply).
    pub async fn session(&self) -> String {
        use acg_core::AgentBackend;
        self.backend
            .create_session(&self.new_session())
            .await
            .expect("session created")
    }
}

/// Processes whose working directory is `dir` (the CLI and the tools it starts there).
pub fn processes_in(dir: &Path) -> Vec<ProcInfo> {
    proctree::proc_table()
        .into_iter()
        .filter(|p| p.state != 'Z')
        .filter(|p| std::fs::read_link(format!("/proc/{}/cwd", p.pid)).is_ok_and(|cwd| cwd == dir))
        .collect()
}

/// Records every process that runs in `dir` until dropped (polls `/proc` from a thread).
pub struct ProcessObserver {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<HashSet<(i32, u64)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProcessObserver {
    pub fn watch(dir: &Path) -> Self {
        let dir = dir.to_path_buf();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
        let thread = std::thread::spawn({
            let (stop, seen) = (stop.clone(), seen.clone());
            move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let now = processes_in(&dir);
                    let mut seen = seen.lock().unwrap();
                    seen.extend(now.iter().map(|p| (p.pid, p.starttime)));
                    drop(seen);
                    std::thread::sleep(Duration::from_millis(25));
                }
            }
        });
        ProcessObserver {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// How many processes were seen so far.
    pub fn seen_count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Stops watching and returns what was seen.
    pub fn finish(mut self) -> HashSet<(i32, u64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("observer thread");
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Waits (up to a generous bound) until none of `procs` is alive (zombies count as gone);
/// panics naming the survivors.
pub fn assert_all_gone(procs: &HashSet<(i32, u64)>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let alive: Vec<String> = procs
            .iter()
            .filter(|(pid, start)| {
                proctree::read_proc(*pid).is_some_and(|p| p.starttime == *start && p.state != 'Z')
            })
            .map(|(pid, _)| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                format!(
                    "{pid}: {}",
                    String::from_utf8_lossy(&cmd).replace('\0', " ")
                )
            })
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "processes survived: {alive:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
