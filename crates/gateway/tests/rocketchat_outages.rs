//! The gateway is never hostage to the Rocket.Chat server: sockets dropped mid-conversation,
//! a server that is down (or refuses the bot's password) when the daemon starts or when a
//! watcher is resumed or reset, and a daemon killed with SIGKILL while a message waits in its
//! queue — every message is answered, once.

mod common;
mod rc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use acg_testkit::anthropic::{RecordedRequest, Reply};
use common::*;
use rc::*;
use serde_json::json;

const DEV_WATCHER: &str = "  - name: dev\n    connector: rc\n    room: dev\n";

#[test]
fn a_message_posted_while_the_sockets_are_down_is_answered_after_the_reconnect() {
    let rc = RcWorld::new("7.10.0");
    rc.world.write_config(&rc.config("", "", DEV_WATCHER));
    rc.world.start();
    rc.post("alice", "dev", "@bot first");
    rc.wait_for_bot("dev", "re: first");
    let logins = |rc: &RcWorld| {
        rc.fake
            .ddp_frames()
            .iter()
            .filter(|f| f.text.contains("\"login\""))
            .count()
    };
    let before = logins(&rc);

    rc.fake.drop_all_sockets();
    rc.post("alice", "dev", "@bot during the outage");
    rc.wait_for_bot("dev", "re: during the outage");
    assert!(logins(&rc) > before, "the bot logged in again");
    rc.post("bob", "dev", "@bot after it");
    rc.wait_for_bot("dev", "re: after it");
    assert_eq!(
        rc.bot_texts("dev"),
        ["re: first", "re: during the outage", "re: after it"],
        "each message answered exactly once"
    );
    let all = rc.world.list_all();
    assert_eq!(all[0], "Connector rc (rocketchat): connected", "{all:?}");
    rc.world.stop();
}

#[test]
fn a_server_down_at_start_gives_a_degraded_start_and_answers_once_it_is_up() {
    let rc = RcWorld::new("8.1.0");
    rc.block_on(rc.fake.stop());
    rc.world.write_config(&rc.config("", "", DEV_WATCHER));

    let run = rc.world.run(&["start"]);
    assert_eq!(run.code(), 0, "{run:?}\n{}", rc.world.log());
    let out = run.stdout();
    assert!(out.contains("Gateway started (degraded)."), "{out}");
    assert!(
        out.contains("Connector 'rc' (rocketchat) is not connected yet"),
        "{out}"
    );
    assert!(
        out.contains("Watcher 'dev' is waiting for connector 'rc'"),
        "{out}"
    );

    // status and list tell the operator what is going on.
    let status = rc.world.run(&["status"]).stdout();
    assert!(
        status.contains("rc (rocketchat): reconnecting for ") && status.contains("last error:"),
        "{status}"
    );
    let all = rc.world.list_all();
    assert!(
        all[0].starts_with("Connector rc (rocketchat): reconnecting for "),
        "{all:?}"
    );
    assert!(all[1].ends_with("[waiting]"), "{all:?}");
    // Clear log lines about the retries.
    assert!(
        rc.world.log().contains("cannot connect to Rocket.Chat"),
        "{}",
        rc.world.log()
    );

    rc.block_on(rc.fake.restart()).unwrap();
    rc.wait_for_watcher_state("dev", "active");
    rc.post("alice", "dev", "@bot are you there now?");
    rc.wait_for_bot("dev", "re: are you there now?");
    let all = rc.world.list_all();
    assert_eq!(all[0], "Connector rc (rocketchat): connected", "{all:?}");
    rc.world.stop();
}

#[test]
fn wrong_credentials_do_not_stop_the_other_connectors() {
    let rc = RcWorld::new("7.10.0");
    let config = format!(
        "connectors:\n{rc}  - name: local\n    type: script\nagents:\n  claude:\n    type: claude\n    command: {claude}\n    working_directory: {work}\nwatchers:\n  - name: dev\n    connector: rc\n    room: dev\n  - name: desk\n    connector: local\n    room: desk\n",
        rc = rc.connector_yaml("rc", "wrong-password", ""),
        claude = rc.world.claude().display(),
        work = rc.world.work.display(),
    );
    rc.world.write_config(&config);
    let run = rc.world.run(&["start"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert!(
        run.stdout().contains("Gateway started (degraded)."),
        "{run:?}"
    );
    assert!(
        run.stdout().contains("login refused"),
        "the reason is given: {run:?}"
    );
    let log = rc.world.log();
    assert!(
        log.contains("check server.username and server.password"),
        "{log}"
    );

    // The script connector works meanwhile.
    let run = rc.world.run(&["inject", "desk", "--", "hello desk"]);
    assert_eq!(run.code(), 0, "{run:?}");
    rc.world.wait_for_reply("desk", "re: hello desk");
    let all = rc.world.list_all();
    assert!(
        all.iter().any(
            |l| l.starts_with("Connector rc (rocketchat): reconnecting for ")
                && l.contains("login refused")
        ),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|l| l.starts_with("dev: ") && l.ends_with("[waiting]")),
        "{all:?}"
    );
    rc.world.stop();
}

#[test]
fn a_message_queued_when_the_daemon_is_killed_is_answered_once_after_the_next_start() {
    let rc = RcWorld::new("7.10.0");
    // The first "slow" turn hangs long enough for the daemon to be killed during it.
    let slowed = Arc::new(AtomicBool::new(false));
    let flag = slowed.clone();
    rc.world.mock.respond_with(move |req: &RecordedRequest| {
        let text = last_chat_text(req);
        let reply = Reply::text(format!("re: {text}"));
        if text.contains("slow one") && !flag.swap(true, Ordering::SeqCst) {
            return Some(reply.with_delay(Duration::from_secs(600)));
        }
        Some(reply)
    });
    rc.world.write_config(&rc.config("", "", DEV_WATCHER));
    rc.world.start();
    // One answered message sets the watermark the replay starts from.
    rc.post("alice", "dev", "@bot warm up");
    rc.wait_for_bot("dev", "re: warm up");

    rc.post("alice", "dev", "@bot slow one");
    assert!(
        wait_for(SLOW, || rc
            .prompts_seen()
            .iter()
            .any(|p| p.contains("slow one"))),
        "the slow turn started"
    );
    rc.post("bob", "dev", "@bot queued two");
    let queued = wait_for(SLOW, || {
        let answer = rc.control(&json!({"cmd": "list"}));
        answer["data"][0]["queued"] == 1
    });
    assert!(queued, "{}", rc.world.log());

    let pid = rc.world.pid().unwrap();
    signal(pid, "KILL");
    assert!(wait_for(SLOW, || !alive(pid)));
    for agent in rc.world.agent_processes() {
        signal(agent, "KILL");
    }

    rc.world.start();
    rc.wait_for_bot("dev", "re: queued two");
    // A later message is answered after everything replayed (the room is handled in order).
    rc.post("alice", "dev", "@bot and now?");
    rc.wait_for_bot("dev", "re: and now?");
    let texts = rc.bot_texts("dev");
    let count = |needle: &str| texts.iter().filter(|t| t.contains(needle)).count();
    assert_eq!(count("re: warm up"), 1, "{texts:?}");
    assert_eq!(count("re: queued two"), 1, "{texts:?}");
    assert!(count("re: slow one") <= 1, "{texts:?}");
    assert_eq!(count("re: and now?"), 1, "{texts:?}");
    // The model was asked about "queued two" in exactly one turn.
    let asked = rc
        .world
        .mock
        .turn_requests()
        .iter()
        .filter(|r| {
            r.last_user_text()
                .unwrap_or_default()
                .contains("queued two")
        })
        .count();
    assert_eq!(asked, 1);
    rc.world.stop();
}

#[test]
fn resume_and_reset_while_the_server_is_down_start_the_watcher_once_it_is_up() {
    let rc = RcWorld::new("7.10.0");
    rc.world.write_config(&rc.config("", "", DEV_WATCHER));
    rc.world.start();
    rc.post("alice", "dev", "@bot hello");
    rc.wait_for_bot("dev", "re: hello");

    // `cmd` while the server is down; the watcher keeps running (its room is known from
    // before), subscribes on the reconnect and answers.
    let through_an_outage = |cmd: &str, question: &str| {
        rc.block_on(rc.fake.stop());
        let run = rc.world.run(&[cmd, "dev"]);
        assert_eq!(run.code(), 0, "{run:?}\n{}", rc.world.log());
        let all = rc.world.list_all();
        assert!(all[1].ends_with("[active]"), "{cmd}: {all:?}");
        rc.block_on(rc.fake.restart()).unwrap();
        rc.wait_for_watcher_state("dev", "active");
        rc.post("alice", "dev", &format!("@bot {question}"));
        rc.wait_for_bot("dev", &format!("re: {question}"));
    };
    let session = || rc.control(&json!({"cmd": "list"}))["data"][0]["session_id"].clone();

    // resume: paused while the server was up, resumed while it is down.
    assert_eq!(rc.world.run(&["pause", "dev"]).code(), 0);
    through_an_outage("resume", "back after resume?");

    // reset: a fresh session, started once the server is back.
    let before = session();
    assert!(before.is_string(), "{before}");
    through_an_outage("reset", "back after reset?");
    assert_ne!(session(), before, "reset started a new session");
    let texts = rc.bot_texts("dev");
    assert_eq!(
        texts.iter().filter(|t| t.starts_with("re: ")).count(),
        3,
        "{texts:?}"
    );
    rc.world.stop();
}
