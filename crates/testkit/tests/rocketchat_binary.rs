//! `acg-testkit fake-rocketchat --seed FILE --version V` serves the seed's users and rooms, and
//! `wait_for_message` sees what clients post.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use acg_testkit::rocketchat::{FakeOptions, FakeRocketChat, Seed, SeedUser};
use serde_json::{json, Value};

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Kills the child even when an assertion fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn subcommand_serves_a_yaml_seed_as_the_requested_version() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(
        &seed,
        "users:\n  - { username: bot, password: botpw, name: Bot, roles: [bot] }\n  - { username: alice, password: alicepw }\nrooms:\n  - { name: dev, type: c, members: [alice, bot] }\n",
    )
    .unwrap();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_acg-testkit"))
            .args([
                "fake-rocketchat",
                "--port",
                "0",
                "--version",
                "8.1.0",
                "--seed",
            ])
            .arg(&seed)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("fake-rocketchat 8.1.0 listening on http://127.0.0.1:"),
        "{line}"
    );
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();

    let http = http();
    let info: Value = http
        .get(format!("{url}/api/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["version"], "8.1");
    let login: Value = http
        .post(format!("{url}/api/v1/login"))
        .json(&json!({"user": "bot", "password": "botpw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["status"], "success");
    let room: Value = http
        .get(format!("{url}/api/v1/channels.info?roomName=dev"))
        .header("X-User-Id", login["data"]["userId"].as_str().unwrap())
        .header("X-Auth-Token", login["data"]["authToken"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(room["channel"]["usersCount"], 2);
}

#[tokio::test]
async fn subcommand_reports_a_bad_seed() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"{"users": [], "rooms": [{"name": "x", "type": "c", "members": ["ghost"]}]}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_acg-testkit"))
        .args(["fake-rocketchat", "--seed"])
        .arg(&seed)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ghost"),
        "{out:?}"
    );
}

#[tokio::test]
async fn wait_for_message_sees_existing_and_later_messages() {
    let seed = Seed::new()
        .with_user(SeedUser::new("bot", "botpw").role("bot"))
        .with_user(SeedUser::new("alice", "alicepw"));
    let fake = FakeRocketChat::start(FakeOptions::new("7.10.0", seed))
        .await
        .unwrap();
    let alice = fake.login_as("alice").unwrap();
    alice.post("general", "already there").await.unwrap();
    let found = fake
        .wait_for_message(
            "general",
            |m| m["msg"] == "already there",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(found["u"]["username"], "alice");

    // A message the bot posts over REST a moment later.
    let url = fake.url();
    let poster = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let http = http();
        let login: Value = http
            .post(format!("{url}/api/v1/login"))
            .json(&json!({"user": "bot", "password": "botpw"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        http.post(format!("{url}/api/v1/chat.postMessage"))
            .header("X-User-Id", login["data"]["userId"].as_str().unwrap())
            .header("X-Auth-Token", login["data"]["authToken"].as_str().unwrap())
            .json(&json!({"channel": "#general", "text": "from the bot"}))
            .send()
            .await
            .unwrap();
    });
    let later = fake
        .wait_for_message(
            "#general",
            |m| m["msg"] == "from the bot",
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(later["u"]["username"], "bot");
    poster.await.unwrap();
    let missing = fake
        .wait_for_message(
            "general",
            |m| m["msg"] == "never",
            Duration::from_millis(50),
        )
        .await;
    assert!(missing.is_err());
    assert!(fake.login_as("nobody").is_err());
}
