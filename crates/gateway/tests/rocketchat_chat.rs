//! A team using the built gateway through (fake) Rocket.Chat, with the real `claude` talking
//! to the mock model API: @mentions in a channel and DMs are answered, messages without a
//! mention or from strangers are not, the session survives `restart`, an uploaded file reaches
//! the agent, and a reply longer than the server's limit arrives whole, split at line breaks.

mod common;
mod rc;

use acg_testkit::anthropic::{RecordedRequest, Reply};
use acg_testkit::rocketchat::FakeOptions;
use rc::*;
use serde_json::json;

#[test]
fn mentions_and_dms_are_answered_while_unaddressed_and_strangers_are_not() {
    let rc = RcWorld::new("7.10.0");
    rc.world
        .write_config(&rc.config("", "", RcWorld::dev_and_dm_watchers()));
    let run = rc.world.start();
    assert!(run.stdout().contains("Connector 'rc' connected"), "{run:?}");

    // `list` and `status` show the connector's link.
    let all = rc.world.list_all();
    assert_eq!(all[0], "Connector rc (rocketchat): connected", "{all:?}");
    assert!(
        all[1].starts_with("dev: (rc) dev [claude] session=") && all[1].ends_with("[active]"),
        "{all:?}"
    );
    assert!(
        all[2].starts_with("dm-alice: (rc) @alice [claude]"),
        "{all:?}"
    );
    let status = rc.world.run(&["status"]);
    assert!(
        status.stdout().contains("rc (rocketchat): connected"),
        "{status:?}"
    );

    rc.post("alice", "dev", "@bot hello channel");
    rc.wait_for_bot("dev", "re: hello channel");
    rc.post("alice", "@bot", "hello in private");
    rc.wait_for_bot("alice,bot", "re: hello in private");

    // Not addressed, a stranger, then a guest who is allowed.
    rc.post("alice", "dev", "just talking among ourselves");
    rc.post("mallory", "dev", "@bot let me in");
    rc.post("gina", "dev", "@bot guest question");
    rc.wait_for_bot("dev", "re: guest question");
    // The room is handled in order: by now the two earlier messages were dropped.
    rc.post("alice", "dev", "@bot last one");
    rc.wait_for_bot("dev", "re: last one");

    let prompts = rc.prompts_seen().join("\n");
    assert!(!prompts.contains("among ourselves"), "{prompts}");
    assert!(!prompts.contains("let me in"), "{prompts}");
    // The trusted header the agent sees.
    assert!(
        prompts.contains("[Rocket.Chat #dev | from: alice | role: owner | day: "),
        "{prompts}"
    );
    assert!(prompts.contains("| to: me] hello channel"), "{prompts}");
    assert!(
        prompts.contains("| from: gina | role: guest |"),
        "{prompts}"
    );
    assert!(
        prompts.contains("[Rocket.Chat #@alice | from: alice | role: owner"),
        "{prompts}"
    );
    assert_eq!(
        rc.bot_texts("dev"),
        ["re: hello channel", "re: guest question", "re: last one"]
    );
    rc.world.stop();
}

#[test]
fn the_session_continues_across_a_restart() {
    let rc = RcWorld::new("8.1.0");
    rc.world
        .write_config(&rc.config("", "", "  - name: dev\n    connector: rc\n    room: dev\n"));
    rc.world.start();
    rc.post("alice", "dev", "@bot remember the word kumquat");
    rc.wait_for_bot("dev", "re: remember the word kumquat");
    let session = rc.world.session_of("dev");
    assert!(!session.is_empty());

    let run = rc.world.run(&["restart"]);
    assert_eq!(run.code(), 0, "{run:?}\n{}", rc.world.log());
    assert!(
        run.stdout().contains("Gateway started successfully."),
        "{run:?}"
    );
    assert_eq!(rc.world.session_of("dev"), session);

    rc.world.mock.clear_requests();
    rc.post("bob", "dev", "@bot what was the word?");
    rc.wait_for_bot("dev", "re: what was the word?");
    // The model saw the first exchange again: same session, resumed.
    let last = rc.world.mock.last_turn_request().unwrap();
    let history = last.user_texts().join("\n");
    assert!(history.contains("remember the word kumquat"), "{history}");
    assert!(
        last.assistant_texts()
            .iter()
            .any(|t| t.contains("re: remember the word kumquat")),
        "{:?}",
        last.assistant_texts()
    );
    // Nothing was answered twice after the restart (no replay of answered messages).
    assert_eq!(
        rc.bot_texts("dev"),
        ["re: remember the word kumquat", "re: what was the word?"]
    );
    rc.world.stop();
}

#[test]
fn an_uploaded_file_reaches_the_agent_with_its_path_and_bytes() {
    let rc = RcWorld::new("7.10.0");
    // The model reads the attached file with the Read tool, then quotes what it got.
    rc.world.mock.respond_with(|req: &RecordedRequest| {
        if let Some(result) = req
            .messages()
            .last()
            .and_then(|m| m["content"].as_array())
            .and_then(|blocks| blocks.iter().find(|b| b["type"] == "tool_result"))
        {
            let text = match &result["content"] {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            return Some(Reply::text(format!("file said: {text}")));
        }
        let path = attached_path(&req.last_user_text().unwrap_or_default())?;
        Some(Reply::tool_use("Read", json!({ "file_path": path })))
    });
    // Reads are allowed for owners without asking, so the hook lets the call through.
    rc.world.write_config(&rc.config(
        "",
        "    permissions:\n      enabled: true\n    owner_allowed_tools:\n      - tool: Read\n",
        "  - name: dev\n    connector: rc\n    room: dev\n",
    ));
    rc.world.start();
    rc.upload(
        "alice",
        "dev",
        "notes.txt",
        b"the launch code is 0451\n",
        "@bot please read this",
    );
    let reply = rc.wait_for_bot("dev", "file said:");
    assert!(
        reply["msg"]
            .as_str()
            .unwrap()
            .contains("the launch code is 0451"),
        "{reply}"
    );
    // The prompt named the local copy, which holds the uploaded bytes.
    let prompts = rc.prompts_seen().join("\n");
    let path = attached_path(&prompts).unwrap_or_else(|| panic!("no attachment note: {prompts}"));
    let path = if path.starts_with('/') {
        std::path::PathBuf::from(path)
    } else {
        rc.world.work.join(path)
    };
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"the launch code is 0451\n",
        "{}",
        path.display()
    );
    assert!(prompts.contains("please read this"), "{prompts}");
    rc.world.stop();
}

/// The path in an `[Attached: <id>_notes.txt → <path> — use the Read tool to view it]` note
/// (the local copy is named `<file id>_<name>`).
fn attached_path(prompt: &str) -> Option<String> {
    prompt.lines().find_map(|line| {
        let note = line.strip_prefix("[Attached: ")?;
        let (name, rest) = note.split_once(" → ")?;
        if !name.ends_with("_notes.txt") {
            return None;
        }
        rest.split(" — use the Read tool")
            .next()
            .map(str::to_string)
    })
}

#[test]
fn a_reply_longer_than_the_server_limit_arrives_whole_split_at_lines() {
    let mut options = FakeOptions::new("8.1.0", team_seed());
    options.message_max_allowed_size = 1000;
    let rc = RcWorld::with_options(options);
    let long: String = (1..=80)
        .map(|i| format!("line {i:03} of a long answer, padded to make it wider"))
        .collect::<Vec<_>>()
        .join("\n");
    let reply = long.clone();
    rc.world
        .mock
        .respond_with(move |_: &RecordedRequest| Some(Reply::text(reply.clone())));
    rc.world
        .write_config(&rc.config("", "", "  - name: dev\n    connector: rc\n    room: dev\n"));
    rc.world.start();
    rc.post("alice", "dev", "@bot tell me everything");
    rc.wait_for_bot("dev", "line 080 of a long answer");
    let chunks = rc.bot_texts("dev");
    assert!(chunks.len() >= 4, "{} chunks", chunks.len());
    for chunk in &chunks {
        assert!(chunk.encode_utf16().count() <= 1000, "{}", chunk.len());
        assert!(
            chunk.starts_with("line ") && chunk.ends_with("wider"),
            "{chunk}"
        );
    }
    assert_eq!(chunks.join("\n"), long);
    rc.world.stop();
}
