//! Helpers for end-to-end tests of the built binary against the fake Rocket.Chat
//! (`acg_testkit::rocketchat`): an [`RcWorld`] is a [`World`] (own HOME, mock Anthropic API,
//! real `claude`) plus a fake server with a team — owners `alice` and `bob`, guest `gina`,
//! stranger `mallory`, the bot `bot` — in channels `dev` and `ops` and a DM with alice.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use acg_testkit::anthropic::{RecordedRequest, Reply};
use acg_testkit::rocketchat::{FakeOptions, FakeRocketChat, Seed, SeedRoom, SeedUser};
use serde_json::Value;

use crate::common::*;

/// A world with a fake Rocket.Chat server.
pub struct RcWorld {
    /// Home, mock model API, the binary.
    pub world: World,
    /// The fake server (runs on `rt`).
    pub fake: FakeRocketChat,
    rt: tokio::runtime::Runtime,
}

/// The team: owners alice and bob, guest gina, stranger mallory; the bot is `bot`/`botpw`.
pub fn team_seed() -> Seed {
    let everyone = ["alice", "bob", "gina", "mallory", "bot"];
    Seed::new()
        .with_user(
            SeedUser::new("bot", "botpw")
                .display_name("Gateway Bot")
                .role("bot"),
        )
        .with_user(SeedUser::new("alice", "alicepw").display_name("Alice"))
        .with_user(SeedUser::new("bob", "bobpw").display_name("Bob"))
        .with_user(SeedUser::new("gina", "ginapw").display_name("Gina"))
        .with_user(SeedUser::new("mallory", "mallorypw").display_name("Mallory"))
        .with_room(SeedRoom::channel("dev", &everyone))
        .with_room(SeedRoom::channel("ops", &everyone))
        .with_room(SeedRoom::direct("alice", "bot"))
}

impl RcWorld {
    /// A fake Rocket.Chat of `version` with the team, and a world whose mock model answers
    /// `re: <text of the last chat message>`.
    pub fn new(version: &str) -> RcWorld {
        Self::with_options(FakeOptions::new(version, team_seed()))
    }

    /// Like [`RcWorld::new`] with the fake's options given.
    pub fn with_options(options: FakeOptions) -> RcWorld {
        let world = World::new();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let fake = rt.block_on(FakeRocketChat::start(options)).unwrap();
        world.mock.respond_with(|req: &RecordedRequest| {
            Some(Reply::text(format!("re: {}", last_chat_text(req))))
        });
        RcWorld { world, fake, rt }
    }

    /// Runs a future of the fake's API on its runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The `connectors:` entry of the fake (4-space indented `extra` keys appended).
    pub fn connector_yaml(&self, name: &str, password: &str, extra: &str) -> String {
        format!(
            "  - name: {name}\n    type: rocketchat\n    server:\n      url: {url}\n      username: bot\n      password: {password}\n    allowed_users:\n      owners: [alice, bob]\n      guests: [gina]\n{extra}",
            url = self.fake.url(),
        )
    }

    /// A config: connector `rc` (plus `more_connectors` entries), agent `claude` (with
    /// 4-space indented `agent_extra` keys) and the given `watchers` list items.
    pub fn config(&self, more_connectors: &str, agent_extra: &str, watchers: &str) -> String {
        format!(
            "connectors:\n{rc}{more_connectors}agents:\n  claude:\n    type: claude\n    command: {claude}\n    working_directory: {work}\n    timeout: 400\n{agent_extra}watchers:\n{watchers}gateway:\n  drain_timeout: 5\n",
            rc = self.connector_yaml("rc", "botpw", ""),
            claude = self.world.claude().display(),
            work = self.world.work.display(),
        )
    }

    /// Watchers `dev` (channel `dev`) and `dm-alice` (DM with alice) on connector `rc`.
    pub fn dev_and_dm_watchers() -> &'static str {
        "  - name: dev\n    connector: rc\n    room: dev\n  - name: dm-alice\n    connector: rc\n    room: \"@alice\"\n"
    }

    /// Posts as `user` in `room` (`dev`, `@bot` for a DM to the bot, …); returns the message.
    pub fn post(&self, user: &str, room: &str, text: &str) -> Value {
        let human = self.fake.login_as(user).unwrap();
        if let Some(to) = room.strip_prefix('@') {
            self.block_on(human.dm(to, text)).unwrap()
        } else {
            self.block_on(human.post(room, text)).unwrap()
        }
    }

    /// Uploads a file as `user` with a caption.
    pub fn upload(&self, user: &str, room: &str, name: &str, bytes: &[u8], caption: &str) -> Value {
        let human = self.fake.login_as(user).unwrap();
        self.block_on(human.upload(room, name, bytes.to_vec(), Some(caption)))
            .unwrap()
    }

    /// The bot's messages in a room (REST form, oldest first). `room` as for the fake
    /// (`dev`, or `alice,bot` for the DM).
    pub fn bot_messages(&self, room: &str) -> Vec<Value> {
        self.fake
            .messages(room)
            .into_iter()
            .filter(|m| m["u"]["username"] == "bot")
            .collect()
    }

    /// The texts of the bot's messages in a room.
    pub fn bot_texts(&self, room: &str) -> Vec<String> {
        self.bot_messages(room)
            .iter()
            .map(|m| m["msg"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Waits for a bot message in `room` containing `needle`.
    pub fn wait_for_bot(&self, room: &str, needle: &str) -> Value {
        let found = wait_until(SLOW, || {
            self.bot_messages(room)
                .into_iter()
                .find(|m| m["msg"].as_str().unwrap_or("").contains(needle))
        });
        found.unwrap_or_else(|| {
            panic!(
                "no bot message containing {needle:?} in {room}; bot said {:?}\nlog:\n{}",
                self.bot_texts(room),
                self.world.log()
            )
        })
    }

    /// Waits until `list` shows the watcher line ending with `[<state>]`.
    pub fn wait_for_watcher_state(&self, watcher: &str, state: &str) {
        let suffix = format!("[{state}]");
        let ok = wait_for(SLOW, || {
            self.world
                .list()
                .iter()
                .any(|l| l.starts_with(&format!("{watcher}: ")) && l.ends_with(&suffix))
        });
        assert!(
            ok,
            "watcher {watcher} never {state}: {:?}\nlog:\n{}",
            self.world.list_all(),
            self.world.log()
        );
    }

    /// One raw control-socket request (for fields the CLI does not print, e.g. `queued`).
    pub fn control(&self, request: &Value) -> Value {
        let mut stream = UnixStream::connect(self.world.socket()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        writeln!(stream, "{request}").unwrap();
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    /// Every chat text the model was sent (one entry per user message of every request).
    pub fn prompts_seen(&self) -> Vec<String> {
        self.world.prompts_seen()
    }
}

/// The text of the last chat message in a request: the last line that starts with a trusted
/// header (`[Rocket.Chat #… | …] text`), without the header; else the last user text.
pub fn last_chat_text(req: &RecordedRequest) -> String {
    let said = req.last_user_text().unwrap_or_default();
    said.lines()
        .rev()
        .find_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("[Rocket.Chat ")
                .and_then(|rest| rest.split_once("] "))
                .map(|(_, text)| text.to_string())
        })
        .unwrap_or(said)
}
