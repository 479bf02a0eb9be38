//! OpenCode agents end to end: the built binary as a daemon, `type: script` rooms driven with
//! `inject`, the real pinned `opencode serve` as the sidecar (offline, against the mock
//! OpenAI API) making REAL tool calls, and its permission requests decided by the gateway's
//! policy, chat approvals and audit trail — the same path as the Claude hook.

mod common;
#[path = "opencode_world/mod.rs"]
mod opencode_world;

use opencode_world::*;
use serde_json::{json, Value};

/// A config: script connector `local`, the given agents (YAML under `agents:`, keys
/// indented by two spaces) and watchers, and a generous drain timeout.
fn config(agents: &str, watchers: &str) -> String {
    format!(
        "connectors:\n  - name: local\n    type: script\nagents:\n{agents}watchers:\n{watchers}gateway:\n  drain_timeout: 120\n"
    )
}

/// An OpenCode agent `name` with `permissions.enabled: <enabled>` and `extra` YAML (keys
/// indented by four spaces).
fn opencode_agent(world: &OcWorld, name: &str, enabled: bool, extra: &str) -> String {
    format!(
        "  {name}:\n    type: opencode\n    command: {command}\n    working_directory: {work}\n    timeout: 400\n    permissions:\n      enabled: {enabled}\n{extra}",
        command = yaml_path(&world.opencode()),
        work = yaml_path(&world.work()),
    )
}

fn watcher(name: &str, room: &str, agent: &str) -> String {
    format!("  - name: {name}\n    connector: local\n    room: {room}\n    agent: {agent}\n")
}

fn count(texts: &[String], needle: &str) -> usize {
    texts.iter().filter(|t| t.contains(needle)).count()
}

const REQUEST: &str = "🔐 **Permission required**";

/// The records of one tool, without the "asked" ones.
fn decided<'a>(records: &'a [Value], tool: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["tool"] == tool && r["decision"] != "asked")
        .collect()
}

#[test]
fn owners_approve_and_deny_in_chat_guests_are_refused_and_rules_allow() {
    let world = OcWorld::new();
    let work = world.work();
    world.write_config(&config(
        &opencode_agent(
            &world,
            "coder",
            true,
            "    new_session_args: ['--log-level', 'INFO']\n    owner_allowed_tools:\n      - tool: bash\n        params: 'touch \\S+/auto-[0-9]+\\.txt'\n    guest_allowed_tools:\n      - tool: read\n",
        ),
        &watcher("helper", "desk", "coder"),
    ));
    let out = world.start();
    assert!(out.contains("Gateway started successfully."), "{out}");

    // status and list show the sidecar; it runs with the serve args and the merged config.
    let status = world.status();
    assert!(
        status.contains("Agents:\n  coder (opencode): opencode server running (pid "),
        "{status}"
    );
    let list = world.list();
    assert!(
        list.iter()
            .any(|l| l.starts_with("Agent coder (opencode): opencode server running (pid ")),
        "{list:?}"
    );
    assert!(
        list.iter()
            .any(|l| l.starts_with("helper: (local) desk [coder] session=")),
        "{list:?}"
    );
    let answer = world.control(&json!({"cmd": "status"}));
    let agent = &answer["data"]["agents"][0];
    assert_eq!(agent["name"], "coder");
    assert_eq!(agent["type"], "opencode");
    assert_eq!(agent["state"], "ready");
    assert_eq!(agent["sidecar"]["state"], "running", "{answer}");
    let pid = agent["sidecar"]["pid"].as_u64().unwrap() as u32;
    let argv = proc_strings(pid, "cmdline");
    assert!(
        argv.windows(3)
            .any(|w| w == ["serve", "--log-level", "INFO"]),
        "{argv:?}"
    );
    let content = proc_strings(pid, "environ")
        .into_iter()
        .find_map(|v| {
            v.strip_prefix("OPENCODE_CONFIG_CONTENT=")
                .map(str::to_string)
        })
        .unwrap();
    // The operator's provider is kept, the gateway's shell rule added.
    assert!(content.contains("\"mock-model\""), "{content}");
    assert!(content.contains("\"bash\":{\"*\":\"ask\""), "{content}");

    // An owner's command no rule allows: asked in chat, approved, run.
    let approved = work.join("approved.txt");
    world.inject(
        "helper",
        &format!("please run [[touch {}]]", approved.display()),
        "alice",
        false,
    );
    let (request, id) = world.nth_request("desk", 1);
    assert_eq!(
        request,
        format!(
            "🔐 **Permission required** `[{id}]`\n**Tool:** `bash`\n**Params:** `command='touch {}'`\nReply `approve {id}` or `deny {id}`",
            approved.display()
        )
    );
    assert!(!approved.exists(), "nothing runs before the approval");
    let pending = world.control(&json!({"cmd": "status"}))["data"]["pending_approvals"].clone();
    assert_eq!(pending[0]["id"], id, "{pending}");
    assert_eq!(pending[0]["tool"], "bash");
    world.inject("helper", &format!("approve {id}"), "bob", false);
    world.wait_for_nth("desk", "tool said:", 1);
    assert!(approved.exists());
    assert!(world
        .texts("desk")
        .contains(&format!("✅ Permission `{id}` approved.")));

    // Denied: nothing runs, and the model is told who denied it and why.
    let denied = work.join("denied.txt");
    world.inject(
        "helper",
        &format!("please run [[touch {}]]", denied.display()),
        "alice",
        false,
    );
    let (_, id2) = world.nth_request("desk", 2);
    world.inject("helper", &format!("deny {id2}"), "bob", false);
    let reply = world.wait_for_nth("desk", "tool said:", 2);
    assert!(
        reply.contains("The owner bob denied this tool call in chat"),
        "{reply}"
    );
    let result = world.wait_for_tool_result("denied this tool call");
    assert!(result.contains(&format!("deny {id2}")), "{result}");
    assert!(!denied.exists());

    // A guest: refused at once, nobody is asked.
    let guest = work.join("guest.txt");
    world.inject(
        "helper",
        &format!("please run [[touch {}]]", guest.display()),
        "gus",
        true,
    );
    let reply = world.wait_for_nth("desk", "tool said:", 3);
    assert!(reply.contains("not permitted for guests"), "{reply}");
    assert!(!guest.exists());
    assert_eq!(count(&world.texts("desk"), REQUEST), 2);

    // Every tool asks the gateway (OpenCode itself would let `read` run): the guest rule
    // allows this one.
    std::fs::write(work.join("notes.txt"), "the secret notes\n").unwrap();
    world.inject(
        "helper",
        &format!("please read [[{}]]", work.join("notes.txt").display()),
        "gus",
        true,
    );
    let reply = world.wait_for_nth("desk", "tool said:", 4);
    assert!(reply.contains("the secret notes"), "{reply}");

    // An owner rule allows without asking.
    let auto = work.join("auto-1.txt");
    world.inject(
        "helper",
        &format!("please run [[touch {}]]", auto.display()),
        "alice",
        false,
    );
    world.wait_for_nth("desk", "tool said:", 5);
    assert!(auto.exists());
    assert_eq!(count(&world.texts("desk"), REQUEST), 2);

    // The audit trail has every decision, with the approver and the rule.
    let records = world.audit();
    let bash = decided(&records, "bash");
    let decisions: Vec<&str> = bash
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(
        decisions,
        ["approved", "denied", "guest_denied", "auto_allowed"],
        "{records:?}"
    );
    assert_eq!(bash[0]["approver"], "bob");
    assert_eq!(bash[0]["requester"], "alice");
    assert_eq!(bash[0]["watcher"], "helper");
    assert_eq!(
        bash[0]["params"][0],
        format!("touch {}", approved.display())
    );
    assert_eq!(bash[1]["approver"], "bob");
    assert_eq!(bash[2]["requester"], "gus");
    assert!(
        bash[3]["rule"].as_str().unwrap().contains("owner rule #1"),
        "{}",
        bash[3]
    );
    let read = decided(&records, "read");
    assert_eq!(read.len(), 1, "{records:?}");
    assert_eq!(read[0]["decision"], "auto_allowed");
    assert!(
        read[0]["rule"].as_str().unwrap().contains("guest rule #1"),
        "{}",
        read[0]
    );
    assert_eq!(
        records.iter().filter(|r| r["decision"] == "asked").count(),
        2
    );

    world.stop();
    assert!(world.status().contains("not running"));
}

#[test]
fn a_broken_sidecar_degrades_the_start_and_a_stopping_watcher_rejects_its_pending_request() {
    let world = OcWorld::new();
    let work = world.work();
    // A stand-in `opencode` that can never start.
    let bad = world.home.root().join("bad-opencode");
    std::fs::write(
        &bad,
        "#!/bin/sh\necho 'cannot start: no licence' >&2\nexit 3\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let agents = format!(
        "{}{}  broken:\n    type: opencode\n    command: {}\n    working_directory: {}\n",
        opencode_agent(&world, "coder", true, ""),
        opencode_agent(&world, "loose", false, ""),
        yaml_path(&bad),
        yaml_path(&work),
    );
    let watchers = format!(
        "{}{}{}",
        watcher("helper", "desk", "coder"),
        watcher("lax", "lax", "loose"),
        watcher("dead", "void", "broken"),
    );
    world.write_config(&config(&agents, &watchers));
    let out = world.start();
    assert!(out.contains("Gateway started (degraded)."), "{out}");
    assert!(out.contains("Agent 'broken' failed to start"), "{out}");
    assert!(out.contains("no licence"), "{out}");
    assert!(out.contains("Watcher 'dead' skipped"), "{out}");

    let status = world.status();
    assert!(
        status.contains("  coder (opencode): opencode server running (pid "),
        "{status}"
    );
    assert!(
        status.contains("  loose (opencode): opencode server running (pid "),
        "{status}"
    );
    assert!(
        status.contains("  broken (opencode): failed to start: "),
        "{status}"
    );
    let list = world.list();
    let broken = list
        .iter()
        .find(|l| l.starts_with("Agent broken (opencode): failed to start: "))
        .unwrap_or_else(|| panic!("{list:?}"));
    assert!(broken.contains("no licence"), "{broken}");
    let answer = world.control(&json!({"cmd": "status"}));
    let broken = answer["data"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "broken")
        .unwrap()
        .clone();
    assert_eq!(broken["state"], "failed");
    assert_eq!(broken["sidecar"]["state"], "restarting", "{broken}");

    // Approvals off: the rules answer, nobody is asked, the model learns why.
    let lax = work.join("lax.txt");
    world.inject(
        "lax",
        &format!("please run [[touch {}]]", lax.display()),
        "alice",
        false,
    );
    let reply = world.wait_for_nth("lax", "tool said:", 1);
    assert!(
        reply.contains("approvals in chat are turned off"),
        "{reply}"
    );
    assert!(!lax.exists());
    assert_eq!(count(&world.texts("lax"), REQUEST), 0);

    // A request pending when its watcher is paused is rejected, and OpenCode hears it.
    let pending = work.join("pending.txt");
    world.inject(
        "helper",
        &format!("please run [[touch {}]]", pending.display()),
        "alice",
        false,
    );
    world.nth_request("desk", 1);
    let run = world.run(&["pause", "helper"]);
    assert_eq!(run.code(), 0, "{run:?}");
    let result = world.wait_for_tool_result("paused, reset or stopped");
    assert!(result.contains("denied"), "{result}");
    // The turn went on to its end (the drain waits for it).
    world.wait_for_nth("desk", "tool said:", 1);
    assert!(!pending.exists());
    let status = world.control(&json!({"cmd": "status"}));
    assert_eq!(status["data"]["pending_approvals"], json!([]), "{status}");
    let records = world.audit();
    let withdrawn = decided(&records, "bash")
        .into_iter()
        .find(|r| r["watcher"] == "helper")
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(withdrawn["decision"], "denied");
    assert!(
        withdrawn["reason"].as_str().unwrap().contains("withdrawn"),
        "{withdrawn}"
    );

    world.stop();
}
