//! Tool-call approval in (fake) Rocket.Chat rooms: the real `claude` makes a real Write call,
//! the permission broker asks in the room, and an owner answers `approve <id>` / `deny <id>`
//! there — without @mentioning the bot, although the room requires mentions.

mod common;
mod rc;

use acg_testkit::anthropic::{RecordedRequest, Reply};
use rc::*;
use serde_json::json;

/// The mock model: "please write NAME" → a `Write` of `<work>/NAME`; a tool result → a
/// reply quoting it (`tool said: …`); anything else → `re: <text>`.
fn script_the_model(rc: &RcWorld) {
    let work = rc.world.work.clone();
    rc.world.mock.respond_with(move |req: &RecordedRequest| {
        req.messages().last()?;
        if let Some(text) = req.newest_tool_result_text() {
            return Some(Reply::text(format!("tool said: {text}")));
        }
        let said = last_chat_text(req);
        if let Some(name) = said
            .split("please write ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            return Some(Reply::tool_use(
                "Write",
                json!({"file_path": work.join(name).display().to_string(), "content": "made by the agent\n"}),
            ));
        }
        Some(Reply::text(format!("re: {said}")))
    });
}

const PERMISSIONS: &str = "    permissions:\n      enabled: true\n";

fn start(rc: &RcWorld, watchers: &str) {
    script_the_model(rc);
    rc.world.write_config(&rc.config("", PERMISSIONS, watchers));
    rc.world.start();
}

/// Waits for the request message in a room and returns its id.
fn request_id(rc: &RcWorld, room: &str) -> String {
    let msg = rc.wait_for_bot(room, "🔐 **Permission required**");
    let text = msg["msg"].as_str().unwrap().to_string();
    let id = text
        .split("`[")
        .nth(1)
        .and_then(|rest| rest.split("]`").next())
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 4, "{text}");
    id
}

fn tool_results(rc: &RcWorld) -> Vec<String> {
    rc.world
        .mock
        .turn_requests()
        .iter()
        .flat_map(|r| r.tool_results())
        .map(|r| r.text)
        .collect()
}

const DEV: &str = "  - name: dev\n    connector: rc\n    room: dev\n";

#[test]
fn an_owner_approves_in_the_room_without_a_mention_and_the_file_is_written() {
    let rc = RcWorld::new("8.1.0");
    start(&rc, DEV);
    let ask = rc.post("alice", "dev", "@bot please write approved.txt");
    let id = request_id(&rc, "dev");
    let request = rc.wait_for_bot("dev", &id);
    let path = rc.world.work.join("approved.txt");
    assert_eq!(
        request["msg"],
        format!(
            "🔐 **Permission required** `[{id}]`\n**Tool:** `Write`\n**Params:** `file_path='{}', content='made by the agent\\n'`\nReply `approve {id}` or `deny {id}`",
            path.display()
        )
    );
    // Asked in the thread of the message that started the turn.
    assert_eq!(request["tmid"], ask["_id"]);
    assert!(!path.exists());

    // A guest's approve (no mention) is chat in a mention-only room: dropped, nothing decided.
    rc.post("gina", "dev", &format!("approve {id}"));
    // An owner's approve needs no mention.
    rc.post("bob", "dev", &format!("approve {id}"));
    rc.wait_for_bot("dev", &format!("✅ Permission `{id}` approved."));
    let reply = rc.wait_for_bot("dev", "tool said:");
    assert!(path.exists(), "{reply}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "made by the agent\n"
    );
    let texts = rc.bot_texts("dev");
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains(&format!("`{id}` approved.")))
            .count(),
        1,
        "{texts:?}"
    );
    // The commands never reached the model.
    let prompts = rc.prompts_seen().join("\n");
    assert!(!prompts.contains(&format!("approve {id}")), "{prompts}");
    rc.world.stop();
}

#[test]
fn deny_keeps_the_file_unwritten_and_the_model_gets_the_reason() {
    let rc = RcWorld::new("7.10.0");
    start(&rc, DEV);
    rc.post("alice", "dev", "@bot please write denied.txt");
    let id = request_id(&rc, "dev");
    rc.post("alice", "dev", &format!("DENY {}", id.to_uppercase()));
    rc.wait_for_bot("dev", &format!("❌ Permission `{id}` denied."));
    let reply = rc.wait_for_bot("dev", "tool said:");
    assert!(!rc.world.work.join("denied.txt").exists());
    let said = reply["msg"].as_str().unwrap();
    assert!(said.contains("alice denied this tool call"), "{said}");
    assert!(
        tool_results(&rc)
            .iter()
            .any(|t| t.contains(&format!("deny {id}"))),
        "{:?}",
        tool_results(&rc)
    );
    rc.world.stop();
}

#[test]
fn a_guest_is_denied_without_any_chat_message() {
    let rc = RcWorld::new("7.10.0");
    start(&rc, DEV);
    rc.post("gina", "dev", "@bot please write guest.txt");
    let reply = rc.wait_for_bot("dev", "tool said:");
    assert!(!rc.world.work.join("guest.txt").exists(), "{reply}");
    let texts = rc.bot_texts("dev");
    assert!(
        !texts.iter().any(|t| t.contains("Permission required")),
        "{texts:?}"
    );
    let said = reply["msg"].as_str().unwrap();
    assert!(said.contains("not permitted for guests"), "{said}");
    rc.world.stop();
}

#[test]
fn two_pending_requests_in_two_rooms_are_resolved_independently() {
    let rc = RcWorld::new("8.1.0");
    start(
        &rc,
        "  - name: dev\n    connector: rc\n    room: dev\n  - name: ops\n    connector: rc\n    room: ops\n",
    );
    rc.post("alice", "dev", "@bot please write dev.txt");
    rc.post("alice", "ops", "@bot please write ops.txt");
    let dev = request_id(&rc, "dev");
    let ops = request_id(&rc, "ops");
    assert_ne!(dev, ops);

    // An id is only good in its own room.
    rc.post("bob", "ops", &format!("approve {dev}"));
    rc.wait_for_bot(
        "ops",
        &format!("⚠️ No pending permission request with ID `{dev}`."),
    );
    rc.post("bob", "ops", &format!("deny {ops}"));
    rc.wait_for_bot("ops", "tool said:");
    assert!(!rc.world.work.join("ops.txt").exists());
    assert!(!rc.world.work.join("dev.txt").exists(), "still waiting");
    assert!(!rc.bot_texts("dev").iter().any(|t| t.contains("tool said")));

    rc.post("bob", "dev", &format!("approve {dev}"));
    rc.wait_for_bot("dev", "tool said:");
    assert!(rc.world.work.join("dev.txt").exists());
    rc.world.stop();
}
