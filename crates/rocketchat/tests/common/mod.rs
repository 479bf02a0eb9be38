//! Shared helpers of the integration tests: a seeded fake Rocket.Chat, a connector config for
//! it, and an inbound handler that records what the connector delivers.

#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acg_config::model::{AgentChainSettings, AttachmentSettings, ChatServerConfig};
use acg_core::ports::{Delivery, InboundHandler};
use acg_core::IncomingMessage;
use acg_rocketchat::{RocketChatConnector, RocketChatOptions};
use acg_testkit::rocketchat::{FakeOptions, FakeRocketChat, Seed, SeedRoom, SeedUser};
use async_trait::async_trait;

/// Generous bound for anything the tests wait for (a loaded 2-core machine is slow).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Users: the bot, an owner, a guest, a stranger and a peer agent; rooms `dev` (channel)
/// and `secret` (group) with all of them.
pub fn seed() -> Seed {
    let everyone = ["bot", "alice", "gina", "eve", "wavebro"];
    Seed::new()
        .with_user(
            SeedUser::new("bot", "botpw")
                .display_name("Gateway Bot")
                .role("bot"),
        )
        .with_user(SeedUser::new("alice", "alicepw").display_name("Alice"))
        .with_user(SeedUser::new("gina", "ginapw"))
        .with_user(SeedUser::new("eve", "evepw"))
        .with_user(SeedUser::new("wavebro", "wavepw").role("bot"))
        .with_room(SeedRoom::channel("dev", &everyone))
        .with_room(SeedRoom::group("secret", &everyone))
}

/// Starts a fake of `version` with [`seed`].
pub async fn fake(version: &str) -> FakeRocketChat {
    fake_with(FakeOptions::new(version, seed())).await
}

/// Starts a fake with explicit options.
pub async fn fake_with(options: FakeOptions) -> FakeRocketChat {
    FakeRocketChat::start(options).await.expect("fake starts")
}

/// The connector config for a fake: owner alice, guest gina, peer agent wavebro (2 turns),
/// 1 MB attachment limit, UTC.
pub fn config(url: &str, cache: &Path) -> ChatServerConfig {
    ChatServerConfig {
        url: url.to_string(),
        username: "bot".into(),
        password: "botpw".into(),
        team: None,
        token: None,
        owners: vec!["alice".into()],
        guests: vec!["gina".into()],
        attachments: AttachmentSettings {
            max_file_size_mb: 1.0,
            download_timeout: Duration::from_secs(20),
            cache_dir: String::new(),
            cache_dir_global: cache.to_path_buf(),
        },
        reply_in_thread: false,
        permission_reply_in_thread: true,
        require_mention: true,
        filter_sender: true,
        agent_chain: AgentChainSettings {
            agent_usernames: vec!["wavebro".into()],
            max_turns: 2,
            ttl: Duration::from_secs(3600),
        },
        timezone: "UTC".into(),
    }
}

/// Options with short reconnect delays so tests do not sleep long.
pub fn quick_options() -> RocketChatOptions {
    RocketChatOptions {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(500),
        post_retry_delays: vec![Duration::from_millis(50), Duration::from_millis(100)],
        ..RocketChatOptions::default()
    }
}

/// Records every delivered message; answers with a configurable [`Delivery`].
#[derive(Default)]
pub struct Recorder {
    messages: Mutex<Vec<IncomingMessage>>,
    answer: Mutex<Option<Delivery>>,
}

impl Recorder {
    /// A recorder that accepts everything.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// Everything delivered so far.
    pub fn messages(&self) -> Vec<IncomingMessage> {
        self.messages.lock().unwrap().clone()
    }

    /// Texts delivered so far.
    pub fn texts(&self) -> Vec<String> {
        self.messages().into_iter().map(|m| m.text).collect()
    }

    /// Makes later deliveries answer `delivery`.
    pub fn answer_with(&self, delivery: Delivery) {
        *self.answer.lock().unwrap() = Some(delivery);
    }

    /// Waits until a delivered message satisfies `pred`; panics after [`PATIENCE`].
    pub async fn wait_for(
        &self,
        what: &str,
        pred: impl Fn(&IncomingMessage) -> bool,
    ) -> IncomingMessage {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(m) = self.messages().into_iter().find(|m| pred(m)) {
                return m;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; delivered so far: {:?}",
                self.texts()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a message with exactly this text.
    pub async fn wait_text(&self, text: &str) -> IncomingMessage {
        self.wait_for(text, |m| m.text == text).await
    }

    /// How many delivered messages have this text.
    pub fn count_text(&self, text: &str) -> usize {
        self.messages().iter().filter(|m| m.text == text).count()
    }
}

#[async_trait]
impl InboundHandler for Recorder {
    async fn deliver(&self, msg: IncomingMessage) -> Delivery {
        self.messages.lock().unwrap().push(msg);
        self.answer.lock().unwrap().unwrap_or(Delivery::Accepted)
    }
}

/// Polls `cond` until true; panics with `what` after [`PATIENCE`].
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connected connector for a fake, with its recorder.
pub async fn connected(
    fake: &FakeRocketChat,
    cache: &Path,
    options: RocketChatOptions,
) -> (Arc<RocketChatConnector>, Arc<Recorder>) {
    use acg_core::Connector;
    let connector = Arc::new(
        RocketChatConnector::new("rc-test", config(&fake.url(), cache), options)
            .expect("valid config"),
    );
    let recorder = Recorder::new();
    connector
        .connect(recorder.clone())
        .await
        .expect("connect never fails");
    assert!(
        connector.wait_connected(PATIENCE).await,
        "connector connects"
    );
    (connector, recorder)
}
