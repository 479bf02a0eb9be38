//! `agent-chat-gateway send` through a Rocket.Chat connector: text, and files with
//! `--attach` — `rooms.upload` on 7.x, `rooms.media` + `rooms.mediaConfirm` on 8.x (where
//! `rooms.upload` is gone).

mod common;
mod rc;

use rc::*;

fn send_text_and_a_file(version: &str) -> RcWorld {
    let rc = RcWorld::new(version);
    rc.world.write_config(&rc.config("", "", ""));
    rc.world.start();

    let run = rc.world.run(&["send", "dev", "build", "is", "green"]);
    assert_eq!(run.code(), 0, "{run:?}\n{}", rc.world.log());
    assert_eq!(run.stdout().trim(), "Sent.");
    assert_eq!(rc.bot_texts("dev"), ["build is green"]);

    let report = rc.world.work.join("report.csv");
    std::fs::write(&report, b"name,value\nlatency,12\n").unwrap();
    let run = rc
        .world
        .run(&["send", "#ops", "today's numbers", "--attach", "report.csv"]);
    assert_eq!(run.code(), 0, "{run:?}\n{}", rc.world.log());
    let msg = rc.wait_for_bot("ops", "today's numbers");
    assert_eq!(msg["files"][0]["name"], "report.csv");
    let file_id = msg["files"][0]["_id"].as_str().unwrap();
    assert_eq!(
        rc.fake.file_bytes(file_id).unwrap(),
        b"name,value\nlatency,12\n"
    );

    // A DM by `@user`, and a room nobody knows.
    let run = rc.world.run(&["send", "@alice", "psst"]);
    assert_eq!(run.code(), 0, "{run:?}");
    assert_eq!(rc.bot_texts("alice,bot"), ["psst"]);
    let run = rc.world.run(&["send", "no-such-room", "hello?"]);
    assert_eq!(run.code(), 1, "{run:?}");
    rc
}

fn uploads(rc: &RcWorld) -> Vec<String> {
    rc.fake
        .request_log()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.contains("/rooms."))
        .map(|r| format!("{} {}", r.method, r.path.split('/').nth(3).unwrap_or("")))
        .collect()
}

#[test]
fn send_text_and_attach_on_7x_uses_rooms_upload() {
    let rc = send_text_and_a_file("7.10.0");
    assert_eq!(uploads(&rc), ["POST rooms.upload"]);
    rc.world.stop();
}

#[test]
fn send_text_and_attach_on_8x_uses_rooms_media_and_confirm() {
    let rc = send_text_and_a_file("8.1.0");
    assert_eq!(
        uploads(&rc),
        ["POST rooms.media", "POST rooms.mediaConfirm"]
    );
    rc.world.stop();
}
