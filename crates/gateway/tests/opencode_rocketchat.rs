//! An OpenCode agent behind a (fake) Rocket.Chat room, end to end: the built daemon, the
//! fake Rocket.Chat server (`acg_testkit::rocketchat`), the real pinned `opencode serve`
//! against the mock OpenAI API. People post in the room; the agent's real `bash` calls are
//! decided by the gateway's policy, owners' approvals in the room and the audit trail.

mod common;
#[path = "opencode_world/mod.rs"]
mod opencode_world;

use acg_testkit::rocketchat::{FakeOptions, FakeRocketChat, Seed, SeedRoom, SeedUser};
use opencode_world::*;
use serde_json::Value;

/// The team: owners alice and bob, guest gina; the bot is `bot`/`botpw`; channel `dev`.
fn team() -> Seed {
    let everyone = ["alice", "bob", "gina", "bot"];
    Seed::new()
        .with_user(SeedUser::new("bot", "botpw").role("bot"))
        .with_user(SeedUser::new("alice", "alicepw"))
        .with_user(SeedUser::new("bob", "bobpw"))
        .with_user(SeedUser::new("gina", "ginapw"))
        .with_room(SeedRoom::channel("dev", &everyone))
}

struct Room<'a> {
    world: &'a OcWorld,
    fake: &'a FakeRocketChat,
}

impl Room<'_> {
    fn post(&self, user: &str, text: &str) -> Value {
        let human = self.fake.login_as(user).unwrap();
        self.world.block_on(human.post("dev", text)).unwrap()
    }

    fn bot_texts(&self) -> Vec<String> {
        self.fake
            .messages("dev")
            .into_iter()
            .filter(|m| m["u"]["username"] == "bot")
            .map(|m| m["msg"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Waits until at least `n` bot messages contain `needle`; returns the `n`th.
    fn wait_for_nth(&self, needle: &str, n: usize) -> String {
        wait_until(SLOW, || {
            self.bot_texts()
                .into_iter()
                .filter(|t| t.contains(needle))
                .nth(n - 1)
        })
        .unwrap_or_else(|| {
            panic!(
                "no bot message #{n} containing {needle:?}: {:?}\nlog:\n{}",
                self.bot_texts(),
                self.world.log()
            )
        })
    }
}

const REQUEST: &str = "🔐 **Permission required**";

#[test]
fn owners_decide_in_the_room_guests_are_refused_and_rules_allow() {
    let world = OcWorld::new();
    let fake = world
        .block_on(FakeRocketChat::start(FakeOptions::new("8.1.0", team())))
        .unwrap();
    let work = world.work();
    world.write_config(&format!(
        "connectors:\n  - name: rc\n    type: rocketchat\n    server:\n      url: {url}\n      username: bot\n      password: botpw\n    allowed_users:\n      owners: [alice, bob]\n      guests: [gina]\nagents:\n  coder:\n    type: opencode\n    command: {command}\n    working_directory: {work}\n    timeout: 400\n    permissions:\n      enabled: true\n    owner_allowed_tools:\n      - tool: bash\n        params: 'touch \\S+/auto-[0-9]+\\.txt'\nwatchers:\n  - name: dev\n    connector: rc\n    room: dev\n    agent: coder\ngateway:\n  drain_timeout: 60\n",
        url = fake.url(),
        command = yaml_path(&world.opencode()),
        work = yaml_path(&work),
    ));
    let out = world.start();
    assert!(out.contains("Gateway started successfully."), "{out}");
    let room = Room {
        world: &world,
        fake: &fake,
    };
    let list = world.list();
    assert!(
        list.iter()
            .any(|l| l.starts_with("Agent coder (opencode): opencode server running (pid ")),
        "{list:?}"
    );
    assert!(
        world
            .status()
            .contains("  coder (opencode): opencode server running (pid "),
        "{}",
        world.status()
    );

    // An owner asks for a command: the request appears in the room, an owner approves it.
    let approved = work.join("approved.txt");
    room.post(
        "alice",
        &format!("@bot please run [[touch {}]]", approved.display()),
    );
    let request = room.wait_for_nth(REQUEST, 1);
    let id = request_id(&request);
    assert!(
        request.contains(&format!(
            "**Tool:** `bash`\n**Params:** `command='touch {}'`",
            approved.display()
        )),
        "{request}"
    );
    assert!(!approved.exists());
    room.post("bob", &format!("approve {id}"));
    room.wait_for_nth(&format!("✅ Permission `{id}` approved."), 1);
    room.wait_for_nth("tool said:", 1);
    assert!(approved.exists());

    // Denied: the command does not run and the model reads who denied it.
    let denied = work.join("denied.txt");
    room.post(
        "alice",
        &format!("@bot please run [[touch {}]]", denied.display()),
    );
    let id2 = request_id(&room.wait_for_nth(REQUEST, 2));
    room.post("alice", &format!("deny {id2}"));
    room.wait_for_nth(&format!("❌ Permission `{id2}` denied."), 1);
    let reply = room.wait_for_nth("tool said:", 2);
    assert!(
        reply.contains("The owner alice denied this tool call in chat"),
        "{reply}"
    );
    world.wait_for_tool_result(&format!("deny {id2}"));
    assert!(!denied.exists());

    // A guest: refused at once, no message in the room but the agent's answer.
    let guest = work.join("guest.txt");
    room.post(
        "gina",
        &format!("@bot please run [[touch {}]]", guest.display()),
    );
    let reply = room.wait_for_nth("tool said:", 3);
    assert!(reply.contains("not permitted for guests"), "{reply}");
    assert!(!guest.exists());

    // An owner rule: runs without asking.
    let auto = work.join("auto-7.txt");
    room.post(
        "bob",
        &format!("@bot please run [[touch {}]]", auto.display()),
    );
    room.wait_for_nth("tool said:", 4);
    assert!(auto.exists());
    let texts = room.bot_texts();
    assert_eq!(
        texts.iter().filter(|t| t.contains(REQUEST)).count(),
        2,
        "{texts:?}"
    );

    let records = world.audit();
    let decisions: Vec<(&str, &str)> = records
        .iter()
        .filter(|r| r["tool"] == "bash")
        .map(|r| {
            (
                r["decision"].as_str().unwrap(),
                r["requester"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("asked", "alice"),
            ("approved", "alice"),
            ("asked", "alice"),
            ("denied", "alice"),
            ("guest_denied", "gina"),
            ("auto_allowed", "bob"),
        ],
        "{records:?}"
    );
    assert!(records.iter().all(|r| r["connector"] == "rc"));
    world.stop();
}
