//! Shared set-up for the tests that drive the real OpenCode CLI (`opencode serve`) against the
//! test kit's mock OpenAI API, offline, in a throw-away HOME with seeded config directories.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use acg_core::{AgentBackend, EventSink, NewSession, TurnRequest};
use acg_opencode::{OpencodeBackend, OpencodeSettings};
use acg_testkit::agents::{opencode_binary, opencode_provider_config, OpencodeHome};
use acg_testkit::openai::MockOpenAI;

/// Generous: the machine is small and shared, and the server is a 185 MB Bun binary.
pub const TURN_TIMEOUT: Duration = Duration::from_secs(120);

/// The pinned CLI; fails the test (never skips it) when it is not installed.
pub fn opencode() -> PathBuf {
    opencode_binary().unwrap_or_else(|e| panic!("{e}"))
}

/// A mock API, an isolated home and a backend wired to both.
pub struct Harness {
    pub mock: MockOpenAI,
    pub home: OpencodeHome,
    pub backend: OpencodeBackend,
}

/// The offline settings for `home`, with the provider pointed at `mock` through
/// `OPENCODE_CONFIG_CONTENT` (so the gateway's merge is exercised on every test).
pub fn settings(home: &OpencodeHome, mock: &MockOpenAI) -> OpencodeSettings {
    let mut settings = OpencodeSettings::new(opencode().to_string_lossy(), home.work());
    settings.name = "test-agent".into();
    settings.extra_env = home.env();
    settings.extra_env.push((
        "OPENCODE_CONFIG_CONTENT".into(),
        opencode_provider_config(&mock.base_url()).to_string(),
    ));
    settings.ready_timeout = Duration::from_secs(120);
    settings
}

impl Harness {
    /// Everything set up, the sidecar not started yet.
    pub async fn new() -> Self {
        Self::with(|_| {}).await
    }

    /// The same, with a chance to change the settings.
    pub async fn with(tweak: impl FnOnce(&mut OpencodeSettings)) -> Self {
        let mock = MockOpenAI::start().await.expect("mock starts");
        let home = OpencodeHome::new().expect("temp home");
        let mut settings = settings(&home, &mock);
        tweak(&mut settings);
        let backend = OpencodeBackend::new(settings).expect("valid settings");
        Harness {
            mock,
            home,
            backend,
        }
    }

    /// Set up and started.
    pub async fn started() -> Self {
        let h = Self::new().await;
        h.backend.start().await.expect("sidecar starts");
        h
    }

    pub fn new_session(&self) -> NewSession {
        NewSession {
            working_directory: self.home.work(),
            extra_args: vec![],
            title: Some("agent-chat:test".into()),
            timeout: TURN_TIMEOUT,
        }
    }

    pub fn turn(&self, session_id: &str, prompt: &str) -> TurnRequest {
        TurnRequest {
            session_id: session_id.to_owned(),
            prompt: prompt.to_owned(),
            working_directory: self.home.work(),
            timeout: TURN_TIMEOUT,
            attachments: vec![],
            env: BTreeMap::new(),
            system_prompt_file: None,
            watcher: Some("test-watcher".into()),
        }
    }

    pub async fn session(&self) -> String {
        self.backend
            .create_session(&self.new_session())
            .await
            .expect("session created")
    }

    /// Runs a turn, collecting its events.
    pub async fn run(
        &self,
        req: &TurnRequest,
    ) -> (
        Result<acg_core::AgentResponse, acg_core::AgentError>,
        Vec<acg_core::AgentEvent>,
    ) {
        let (sink, mut rx) = EventSink::channel(10_000);
        let result = self.backend.turn(req, &sink).await;
        let mut events = Vec::new();
        while let Ok(e) = rx.try_recv() {
            events.push(e);
        }
        (result, events)
    }

    /// The session ids the server knows (GET /session).
    pub async fn server_sessions(&self) -> Vec<String> {
        let client = self.backend.sidecar().client().await.expect("client");
        let reply = client
            .call(
                hyper::Method::GET,
                "/session",
                None,
                Duration::from_secs(30),
            )
            .await
            .expect("list sessions");
        assert_eq!(reply.status, 200, "{}", reply.text_excerpt());
        reply
            .json()
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}
