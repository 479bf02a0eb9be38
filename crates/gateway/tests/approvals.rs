//! Tool-call approval end to end: the built binary as a daemon, `type: script` rooms driven
//! with `inject`, the real pinned `claude` making REAL tool calls (Write) that the mock model
//! API asks for, and the permission broker deciding through its `PreToolUse` hook.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use acg_testkit::anthropic::{RecordedRequest, Reply};
use common::*;
use serde_json::{json, Value};

/// The mock model: "please write NAME" → a `Write` of `<work>/NAME`; a tool result → a
/// reply quoting it (`tool said: …`); anything else → `ok`.
fn script_the_model(world: &World) {
    let work = world.work.clone();
    world.mock.respond_with(move |req: &RecordedRequest| {
        req.messages().last()?;
        if let Some(text) = req.newest_tool_result_text() {
            return Some(Reply::text(format!("tool said: {text}")));
        }
        let said = req.last_user_text().unwrap_or_default();
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
        Some(Reply::text("ok"))
    });
}

/// A config: script connector `local`, agent `claude` with permissions on, the given
/// `permissions:` extras and `agent_extra` YAML (4-space indented keys), and `watchers`.
fn config(world: &World, permissions: &str, agent_extra: &str, watchers: &str) -> String {
    format!(
        "connectors:\n  - name: local\n    type: script\nagents:\n  claude:\n    type: claude\n    command: {claude}\n    working_directory: {work}\n    timeout: 400\n    permissions:\n      enabled: true\n{permissions}{agent_extra}watchers:\n{watchers}",
        claude = world.claude().display(),
        work = world.work.display(),
    )
}

const ONE_WATCHER: &str = "  - name: helper\n    connector: local\n    room: desk\n";

/// Injects `text` into a watcher as `from` (owner unless `guest`).
fn inject(world: &World, watcher: &str, text: &str, from: &str, guest: bool) {
    let mut args = vec!["inject", watcher, "--from", from];
    if guest {
        args.push("--guest");
    }
    args.push("--");
    args.push(text);
    let run = world.run(&args);
    assert_eq!(run.code(), 0, "inject failed: {run:?}");
}

/// Waits for the request message in a room and returns its id.
fn request_id(world: &World, room: &str) -> String {
    let msg = world.wait_for_reply(room, "🔐 **Permission required**");
    let text = msg["text"].as_str().unwrap().to_string();
    let id = text
        .split("`[")
        .nth(1)
        .and_then(|rest| rest.split("]`").next())
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 4, "{text}");
    id
}

/// The audit trail as JSON records (via the CLI).
fn audit_records(world: &World, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["audit", "--json"];
    all.extend_from_slice(args);
    let run = world.run(&all);
    assert_eq!(run.code(), 0, "{run:?}");
    run.stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every tool result the model was sent.
fn tool_results(world: &World) -> Vec<String> {
    world
        .mock
        .turn_requests()
        .iter()
        .flat_map(|r| r.tool_results())
        .map(|r| r.text)
        .collect()
}

fn texts(world: &World, room: &str) -> Vec<String> {
    world
        .transcript(room)
        .iter()
        .map(|m| m["text"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn an_owner_rule_allows_the_call_without_asking_and_the_audit_names_the_rule() {
    let world = World::new();
    script_the_model(&world);
    world.write_config(&config(
        &world,
        "",
        &format!(
            "    owner_allowed_tools:\n      - tool: Write\n        params: '{}/auto-.*'\n",
            world.work.display()
        ),
        ONE_WATCHER,
    ));
    world.start();
    // The settings file is private and names the hook with the secret's variable.
    let settings = world.runtime_dir().join("claude-hook-claude.json");
    assert_eq!(mode(&settings), 0o600);
    let hook: Value = serde_json::from_slice(&std::fs::read(&settings).unwrap()).unwrap();
    let entry = &hook["hooks"]["PreToolUse"][0]["hooks"][0];
    assert_eq!(entry["headers"]["Authorization"], "Bearer $ACG_HOOK_TOKEN");
    assert_eq!(entry["onFailure"], "block");
    assert_eq!(entry["timeout"], 310);

    inject(&world, "helper", "please write auto-1.txt", "alice", false);
    let reply = world.wait_for_reply("desk", "tool said:");
    // The hook authenticated (the CLI filled in $ACG_HOOK_TOKEN) and the rule allowed it.
    assert!(world.work.join("auto-1.txt").exists(), "{reply}");
    assert!(
        !texts(&world, "desk")
            .iter()
            .any(|t| t.contains("Permission required")),
        "nobody was asked"
    );
    let records = audit_records(&world, &[]);
    let write = records
        .iter()
        .find(|r| r["tool"] == "Write" && r["decision"] != "asked")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(write["decision"], "auto_allowed");
    assert!(
        write["rule"].as_str().unwrap().contains("owner rule #1"),
        "{write}"
    );
    assert_eq!(write["watcher"], "helper");
    assert_eq!(write["requester"], "alice");
    assert_eq!(
        write["params"][0],
        world.work.join("auto-1.txt").display().to_string()
    );
    world.stop();
    assert!(!settings.exists(), "settings file removed on stop");
}

#[test]
fn an_owner_is_asked_in_chat_and_approve_lets_the_tool_run() {
    let world = World::new();
    script_the_model(&world);
    world.write_config(&config(&world, "", "", ONE_WATCHER));
    world.start();
    inject(
        &world,
        "helper",
        "please write approved.txt",
        "alice",
        false,
    );
    let id = request_id(&world, "desk");
    let request = world
        .transcript("desk")
        .into_iter()
        .find(|m| m["text"].as_str().unwrap().contains(&id))
        .unwrap();
    let path = world.work.join("approved.txt").display().to_string();
    assert_eq!(
        request["text"],
        format!(
            "🔐 **Permission required** `[{id}]`\n**Tool:** `Write`\n**Params:** `file_path='{path}', content='made by the agent\\n'`\nReply `approve {id}` or `deny {id}`"
        )
    );
    assert!(!world.work.join("approved.txt").exists());

    // `status` shows what waits for an owner.
    let status = world.run(&["status"]);
    assert!(
        status.stdout().contains("Pending approvals: 1"),
        "{status:?}"
    );
    assert!(
        status
            .stdout()
            .contains(&format!("{id} Write in desk (helper), asked by alice")),
        "{status:?}"
    );

    // While the owners decide, another message waits in the queue.
    inject(&world, "helper", "are you there?", "carol", true);
    let line = world.list_line("helper");
    assert!(line.contains("[active]"), "{line}");

    inject(
        &world,
        "helper",
        &format!("APPROVE {}", id.to_uppercase()),
        "bob",
        false,
    );
    world.wait_for_reply("desk", &format!("✅ Permission `{id}` approved."));
    world.wait_for_reply("desk", "tool said:");
    assert!(world.work.join("approved.txt").exists());
    // The queued message got its own turn after the decision.
    assert!(
        wait_for(SLOW, || texts(&world, "desk").iter().any(|t| t == "ok")),
        "{:?}",
        texts(&world, "desk")
    );

    let records = audit_records(&world, &["--watcher", "helper"]);
    let decisions: Vec<&str> = records
        .iter()
        .filter(|r| r["tool"] == "Write")
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["asked", "approved"]);
    let write = records
        .iter()
        .find(|r| r["tool"] == "Write" && r["decision"] != "asked")
        .unwrap();
    assert_eq!(write["decision"], "approved");
    assert_eq!(write["approver"], "bob");
    assert_eq!(write["requester"], "alice");
    world.stop();
}

#[test]
fn deny_keeps_the_file_unwritten_and_tells_the_model_who_denied() {
    let world = World::new();
    script_the_model(&world);
    world.write_config(&config(&world, "", "", ONE_WATCHER));
    world.start();
    inject(&world, "helper", "please write denied.txt", "alice", false);
    let id = request_id(&world, "desk");
    // A guest cannot decide: the text goes to the agent (queued), the request stays.
    inject(&world, "helper", &format!("deny {id}"), "carol", true);
    inject(&world, "helper", &format!("deny {id}"), "bob", false);
    world.wait_for_reply("desk", &format!("❌ Permission `{id}` denied."));
    let reply = world.wait_for_reply("desk", "tool said:");
    assert!(!world.work.join("denied.txt").exists());
    let said = reply["text"].as_str().unwrap();
    assert!(said.contains("bob denied this tool call"), "{said}");
    assert!(
        tool_results(&world)
            .iter()
            .any(|t| t.contains(&format!("deny {id}"))),
        "{:?}",
        tool_results(&world)
    );
    let records = audit_records(&world, &[]);
    let write = records
        .iter()
        .find(|r| r["tool"] == "Write" && r["decision"] != "asked")
        .unwrap();
    assert_eq!(write["decision"], "denied");
    assert_eq!(write["approver"], "bob");
    world.stop();
}

#[test]
fn nobody_answering_auto_denies_with_the_timeout_notice() {
    let world = World::new();
    script_the_model(&world);
    world.write_config(&config(&world, "      timeout: 3\n", "", ONE_WATCHER));
    world.start();
    inject(&world, "helper", "please write late.txt", "alice", false);
    let id = request_id(&world, "desk");
    world.wait_for_reply(
        "desk",
        &format!("⏱️ Permission `{id}` timed out — **auto-denied**."),
    );
    let reply = world.wait_for_reply("desk", "tool said:");
    let said = reply["text"].as_str().unwrap();
    assert!(said.contains("nobody answered"), "{said}");
    assert!(said.contains("within 3 s"), "{said}");
    assert!(!world.work.join("late.txt").exists());
    // Too late now.
    inject(&world, "helper", &format!("approve {id}"), "bob", false);
    world.wait_for_reply(
        "desk",
        &format!("⚠️ No pending permission request with ID `{id}`."),
    );
    let records = audit_records(&world, &[]);
    assert_eq!(
        records
            .iter()
            .find(|r| r["tool"] == "Write" && r["decision"] != "asked")
            .unwrap()["decision"],
        "timed_out"
    );
    world.stop();
}

#[test]
fn a_guest_is_denied_without_any_chat_message() {
    let world = World::new();
    script_the_model(&world);
    world.write_config(&config(&world, "", "", ONE_WATCHER));
    world.start();
    inject(&world, "helper", "please write guest.txt", "carol", true);
    let reply = world.wait_for_reply("desk", "tool said:");
    let said = reply["text"].as_str().unwrap();
    assert!(said.contains("not permitted for guests"), "{said}");
    assert!(!world.work.join("guest.txt").exists());
    assert_eq!(
        texts(&world, "desk").len(),
        1,
        "{:?}",
        texts(&world, "desk")
    );
    let records = audit_records(&world, &[]);
    let write = records
        .iter()
        .find(|r| r["tool"] == "Write" && r["decision"] != "asked")
        .unwrap();
    assert_eq!(write["decision"], "guest_denied");
    assert_eq!(write["requester"], "carol");
    world.stop();
}

#[test]
fn requests_without_the_secret_are_rejected() {
    let world = World::new();
    world.write_config(&config(&world, "", "", ONE_WATCHER));
    world.start();
    let settings: Value = serde_json::from_slice(
        &std::fs::read(world.runtime_dir().join("claude-hook-claude.json")).unwrap(),
    )
    .unwrap();
    let url = settings["hooks"]["PreToolUse"][0]["hooks"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let addr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/hook"))
        .unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{url}");
    let body = r#"{"session_id":"x","tool_name":"Bash","tool_input":{"command":"date"},"cwd":"/"}"#;
    for auth in [None, Some("Bearer 0000"), Some("Bearer ")] {
        let (status, answer) = post(addr, auth, body);
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(
            answer["hookSpecificOutput"]["permissionDecision"], "deny",
            "{answer}"
        );
    }
    let records = audit_records(&world, &[]);
    assert_eq!(records.len(), 3, "{records:?}");
    assert!(records.iter().all(|r| r["decision"] == "hook_rejected"));
    world.stop();
}

fn post(addr: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "POST /hook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let payload = response.split_once("\r\n\r\n").unwrap().1;
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

#[test]
fn two_pending_requests_in_two_rooms_are_resolved_independently() {
    let world = World::new();
    script_the_model(&world);
    world.write_config(&config(
        &world,
        "",
        "",
        "  - name: front\n    connector: local\n    room: desk\n  - name: back\n    connector: local\n    room: lab\n",
    ));
    world.start();
    inject(&world, "front", "please write front.txt", "alice", false);
    inject(&world, "back", "please write back.txt", "alice", false);
    let front = request_id(&world, "desk");
    let back = request_id(&world, "lab");
    assert_ne!(front, back);

    // An id is only good in its own room.
    inject(&world, "back", &format!("approve {front}"), "bob", false);
    world.wait_for_reply(
        "lab",
        &format!("⚠️ No pending permission request with ID `{front}`."),
    );
    inject(&world, "back", &format!("deny {back}"), "bob", false);
    world.wait_for_reply("lab", "tool said:");
    assert!(!world.work.join("back.txt").exists());
    assert!(!world.work.join("front.txt").exists(), "still waiting");
    assert!(!texts(&world, "desk")
        .iter()
        .any(|t| t.contains("tool said")));

    inject(&world, "front", &format!("approve {front}"), "bob", false);
    world.wait_for_reply("desk", "tool said:");
    assert!(world.work.join("front.txt").exists());

    let decisions: Vec<(String, String)> = audit_records(&world, &[])
        .iter()
        .filter(|r| r["tool"] == "Write" && r["decision"] != "asked")
        .map(|r| {
            (
                r["watcher"].as_str().unwrap().to_string(),
                r["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        decisions.contains(&("back".into(), "denied".into())),
        "{decisions:?}"
    );
    assert!(
        decisions.contains(&("front".into(), "approved".into())),
        "{decisions:?}"
    );
    let front_only = audit_records(&world, &["--watcher", "front"]);
    assert!(front_only.iter().all(|r| r["watcher"] == "front"));
    world.stop();
}

#[test]
fn require_other_owner_makes_the_requester_wait_for_someone_else() {
    let world = World::new();
    script_the_model(&world);
    world.write_config(&config(
        &world,
        "      require_other_owner: true\n",
        "",
        ONE_WATCHER,
    ));
    world.start();
    inject(&world, "helper", "please write mine.txt", "alice", false);
    let id = request_id(&world, "desk");
    inject(&world, "helper", &format!("approve {id}"), "alice", false);
    world.wait_for_reply("desk", "another owner must approve");
    assert!(!world.work.join("mine.txt").exists());
    inject(&world, "helper", &format!("approve {id}"), "bob", false);
    world.wait_for_reply("desk", "tool said:");
    assert!(world.work.join("mine.txt").exists());
    world.stop();
}

#[test]
fn policy_check_explains_each_param_without_a_daemon() {
    let world = World::new();
    let path = world.write_config(&config(
        &world,
        "",
        "    owner_allowed_tools:\n      - tool: Bash\n        params: 'ls(\\s.*)?'\n",
        ONE_WATCHER,
    ));
    let run = world.run(&[
        "policy",
        "check",
        "--config",
        path.to_str().unwrap(),
        "--agent",
        "claude",
        "--role",
        "owner",
        "--tool",
        "Bash",
        "--input",
        r#"{"command": "ls -la && rm -rf /tmp/x"}"#,
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    let out = run.stdout();
    assert!(out.contains("\"ls -la\" — matched owner rule #1"), "{out}");
    assert!(out.contains("\"rm -rf /tmp/x\" — no rule matched"), "{out}");
    assert!(out.contains("Decision: ask an owner in chat"), "{out}");

    let run = world.run(&[
        "policy",
        "check",
        "--config",
        path.to_str().unwrap(),
        "--agent",
        "claude",
        "--role",
        "guest",
        "--tool",
        "Read",
        "--input",
        r#"{"file_path": "a/../b.txt"}"#,
        "--cwd",
        "/w",
    ]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(
        run.stdout().contains("\"/w/b.txt\" — no rule matched"),
        "{run:?}"
    );
    assert!(run.stdout().contains("refused (guest)"), "{run:?}");

    let run = world.run(&[
        "policy",
        "check",
        "--config",
        path.to_str().unwrap(),
        "--agent",
        "nobody",
        "--role",
        "owner",
        "--tool",
        "Bash",
        "--input",
        "{}",
    ]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr().contains("unknown agent"), "{run:?}");
    let run = world.run(&[
        "policy",
        "check",
        "--config",
        path.to_str().unwrap(),
        "--agent",
        "claude",
        "--role",
        "owner",
        "--tool",
        "Bash",
        "--input",
        "{not json",
    ]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("--input is not valid JSON"),
        "{run:?}"
    );
}

#[test]
fn audit_lists_and_filters_records() {
    let world = World::new();
    let run = world.run(&["audit"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(run.stdout().starts_with("No audit records yet"), "{run:?}");

    std::fs::create_dir_all(world.runtime_dir()).unwrap();
    let now = jiff::Timestamp::now();
    let old = now - jiff::SignedDuration::from_hours(3);
    let line = |time: jiff::Timestamp, watcher: &str, decision: &str, approver: Value| {
        json!({"time": format!("{time:.3}"), "connector": "local", "watcher": watcher,
            "session": "s", "requester": "alice", "approver": approver, "tool": "Bash",
            "params": ["make"], "input": "{\"command\": \"make\"}", "decision": decision,
            "rule": null, "reason": "test"})
        .to_string()
    };
    let lines = [
        line(old, "w1", "approved", json!("bob")),
        line(now, "w1", "denied", json!("carol")),
        line(now, "w2", "timed_out", Value::Null),
    ];
    write_audit(&world.runtime_dir().join("audit.jsonl"), &lines);

    let run = world.run(&["audit"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let out: Vec<String> = run.stdout().lines().map(str::to_string).collect();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        out[0].contains("w1 approved Bash (alice, approved by bob)"),
        "{out:?}"
    );
    assert!(
        out[1].contains("w1 denied Bash (alice, denied by carol)"),
        "{out:?}"
    );

    assert_eq!(audit_records(&world, &["--watcher", "w1"]).len(), 2);
    let recent = audit_records(&world, &["--since", "1h"]);
    assert_eq!(recent.len(), 2);
    assert!(recent.iter().all(|r| r["decision"] != "approved"));
    let since = format!("{}", now - jiff::SignedDuration::from_mins(1));
    let both = audit_records(&world, &["--since", &since, "--watcher", "w2"]);
    assert_eq!(both.len(), 1);
    assert_eq!(both[0]["decision"], "timed_out");
    // --json prints the stored lines byte for byte.
    let run = world.run(&["audit", "--json", "--watcher", "w2"]);
    assert_eq!(run.stdout(), format!("{}\n", lines[2]));

    let run = world.run(&["audit", "--since", "yesterday"]);
    assert_eq!(run.code(), 1);
    assert!(run.stderr().contains("--since"), "{run:?}");
    let run = world.run(&["audit", "--watcher", "nobody"]);
    assert_eq!(run.stdout().trim(), "No audit records match.");
}

fn write_audit(path: &Path, lines: &[String]) {
    let mut file = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(file, "{l}").unwrap();
    }
}

#[test]
fn an_unreachable_hook_blocks_the_tool() {
    // Backend level: the real CLI with hook settings that point at a dead port.
    use acg_testkit::agents::TestHome;
    use agent_chat_gateway::claude::{ClaudeBackend, ClaudeSettings};
    use agent_chat_gateway::core::{AgentBackend, EventSink, NewSession, TurnRequest};

    let home = TestHome::new().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = rt
        .block_on(acg_testkit::anthropic::MockAnthropic::start())
        .unwrap();
    let target: PathBuf = home.work().join("blocked.txt");
    let wanted = target.display().to_string();
    mock.respond_with(move |req: &RecordedRequest| {
        let last = req.messages().last()?;
        let has_result = last["content"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["type"] == "tool_result"));
        if has_result {
            Some(Reply::text("after the tool"))
        } else if req.last_user_text()?.contains("write it") {
            Some(Reply::tool_use(
                "Write",
                json!({"file_path": wanted, "content": "x"}),
            ))
        } else {
            Some(Reply::text("ok"))
        }
    });
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let settings_file = home.root().join("hook.json");
    agent_chat_gateway::broker::write_hook_settings(
        &settings_file,
        &format!("http://{dead}/hook"),
        Duration::from_secs(20),
    )
    .unwrap();
    let mut settings = ClaudeSettings::new(
        acg_testkit::agents::claude_binary()
            .unwrap()
            .display()
            .to_string(),
    );
    settings.settings_file = Some(settings_file);
    settings.extra_env = home.claude_env(&mock.base_url());
    settings
        .extra_env
        .push(("ACG_HOOK_TOKEN".into(), "whatever".into()));
    let backend = ClaudeBackend::new(settings);
    let response = rt.block_on(async {
        let session = backend
            .create_session(&NewSession {
                working_directory: home.work().to_path_buf(),
                extra_args: vec![],
                title: None,
                timeout: SLOW,
            })
            .await
            .unwrap();
        backend
            .turn(
                &TurnRequest {
                    session_id: session,
                    prompt: "write it".into(),
                    working_directory: home.work().to_path_buf(),
                    timeout: SLOW,
                    attachments: vec![],
                    env: Default::default(),
                    system_prompt_file: None,
                    watcher: None,
                },
                &EventSink::discard(),
            )
            .await
            .unwrap()
    });
    assert!(
        !target.exists(),
        "the tool ran although the hook was unreachable"
    );
    assert!(response.text.contains("after the tool"), "{response:?}");
    let results: Vec<_> = mock
        .turn_requests()
        .iter()
        .flat_map(|r| r.tool_results())
        .collect();
    assert!(!results.is_empty());
    assert!(results.iter().all(|r| r.is_error), "{results:?}");
}
