//! Conformance of the fake Rocket.Chat with Rocket.Chat's own published types: real REST
//! responses and DDP frames produced by the fake (7.10 and 8.1) are written into a TypeScript
//! file as typed constants (`const x: RestMessage = {...}` — see `crates/testkit/typings/wire.ts`
//! for how the published types map to the wire) and the pinned `tsc --noEmit --strict` from
//! `.tools/npm` (installed by `scripts/install-agents.sh`) must accept them. A deliberately
//! wrong document marked `@ts-expect-error` proves the check bites.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use acg_testkit::rocketchat::{
    password_digest, FakeOptions, FakeRocketChat, Seed, SeedRoom, SeedUser,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn npm_prefix() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/npm")
}

fn seed() -> Seed {
    Seed::new()
        .with_user(
            SeedUser::new("bot", "botpw")
                .display_name("Gateway Bot")
                .role("bot"),
        )
        .with_user(SeedUser::new("alice", "alicepw").display_name("Alice"))
        .with_room(SeedRoom::channel("dev", &["alice"]))
        .with_room(SeedRoom::group("secret", &["alice", "bot"]))
}

/// One typed constant of the generated file.
struct Check {
    name: String,
    ty: &'static str,
    value: Value,
}

struct Collector {
    version: String,
    checks: Vec<Check>,
}

impl Collector {
    fn add(&mut self, name: &str, ty: &'static str, value: &Value) {
        assert!(!value.is_null(), "{name}: nothing to check");
        self.checks.push(Check {
            name: format!("{}_{}", name, self.version.replace('.', "_")),
            ty,
            value: value.clone(),
        });
    }
}

async fn call(http: &reqwest::Client, req: reqwest::RequestBuilder) -> Value {
    let _ = http;
    let res = req.send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}

/// Drives one fake through everything a bot does and records the answers.
async fn collect(version: &str) -> Vec<Check> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeRocketChat::start(FakeOptions::new(version, seed()))
        .await
        .unwrap();
    let mut c = Collector {
        version: version.to_owned(),
        checks: Vec::new(),
    };
    let http = reqwest::Client::new();
    let url = fake.url();

    // DDP first, so the stream sees everything that follows.
    let (mut ws, _) = tokio_tungstenite::connect_async(fake.ws_url())
        .await
        .unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(
        json!({"msg": "connect", "version": "1", "support": ["1"]}),
    ))
    .await
    .unwrap();
    ws.send(send(json!({"msg": "method", "id": "1", "method": "login", "params": [
        {"user": {"username": "bot"}, "password": {"digest": password_digest("botpw"), "algorithm": "sha-256"}}
    ]})))
    .await
    .unwrap();
    let secret = fake.room_id("secret").unwrap();
    ws.send(send(
        json!({"msg": "sub", "id": "s", "name": "stream-room-messages", "params": [secret, false]}),
    ))
    .await
    .unwrap();
    // Nothing is posted before the subscription is live.
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("ready");
        let Some(Ok(Message::Text(t))) = next else {
            panic!("socket ended")
        };
        if serde_json::from_str::<Value>(&t).unwrap()["msg"] == "ready" {
            break;
        }
    }

    let login = call(
        &http,
        http.post(format!("{url}/api/v1/login"))
            .json(&json!({"user": "bot", "password": "botpw"})),
    )
    .await;
    c.add("login", "LoginBody", &login);
    let uid = login["data"]["userId"].as_str().unwrap().to_owned();
    let token = login["data"]["authToken"].as_str().unwrap().to_owned();
    let get = |path: &str| {
        http.get(format!("{url}/api/v1/{path}"))
            .header("X-User-Id", &uid)
            .header("X-Auth-Token", &token)
    };
    let post = |path: &str, body: Value| {
        http.post(format!("{url}/api/v1/{path}"))
            .header("X-User-Id", &uid)
            .header("X-Auth-Token", &token)
            .json(&body)
    };

    c.add("me", "MeBody", &call(&http, get("me")).await);
    c.add(
        "info",
        "InfoBody",
        &call(&http, http.get(format!("{url}/api/info"))).await,
    );
    c.add(
        "settings",
        "SettingsPublicBody",
        &call(&http, http.get(format!("{url}/api/v1/settings.public"))).await,
    );

    let posted = call(&http, post("chat.postMessage", json!({"channel": "#secret", "text": "hello @alice @all, see #dev https://example.com/x"}))).await;
    c.add("post_message", "PostMessageBody", &posted);
    let parent = posted["message"]["_id"].clone();
    let reply = call(
        &http,
        post(
            "chat.postMessage",
            json!({"roomId": secret, "text": "in thread", "tmid": parent}),
        ),
    )
    .await;
    c.add("post_reply", "PostMessageBody", &reply);
    // Joining #dev by posting there creates a `uj` system message.
    c.add(
        "post_join",
        "PostMessageBody",
        &call(
            &http,
            post(
                "chat.postMessage",
                json!({"channel": "dev", "text": "joined"}),
            ),
        )
        .await,
    );
    c.add(
        "post_dm",
        "PostMessageBody",
        &call(
            &http,
            post(
                "chat.postMessage",
                json!({"channel": "@alice", "text": "dm"}),
            ),
        )
        .await,
    );
    let edited = call(
        &http,
        post(
            "chat.update",
            json!({"roomId": secret, "msgId": parent, "text": "edited"}),
        ),
    )
    .await;
    c.add("edited", "Success<{ message: RestMessage }>", &edited);

    c.add(
        "channels_info",
        "ChannelsInfoBody",
        &call(&http, get("channels.info?roomName=dev")).await,
    );
    c.add(
        "groups_info",
        "GroupsInfoBody",
        &call(&http, get("groups.info?roomName=secret")).await,
    );
    let im = call(&http, post("im.create", json!({"username": "alice"}))).await;
    c.add("im_create", "ImCreateBody", &im);

    let human = fake.login_as("alice").unwrap();
    human
        .upload(
            "secret",
            "photo.png",
            vec![137, 80, 78, 71],
            Some("a picture"),
        )
        .await
        .unwrap();
    human
        .upload("secret", "notes.txt", b"notes".to_vec(), None)
        .await
        .unwrap();
    human.dm("bot", "hi bot").await.unwrap();

    // Uploads by version.
    let part = || {
        reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"data".to_vec())
                .file_name("report.csv")
                .mime_str("text/csv")
                .unwrap(),
        )
    };
    if version.starts_with('7') {
        let res = http
            .post(format!("{url}/api/v1/rooms.upload/{secret}"))
            .header("X-User-Id", &uid)
            .header("X-Auth-Token", &token)
            .multipart(
                part()
                    .text("msg", "caption")
                    .text("description", "the report"),
            )
            .send()
            .await
            .unwrap();
        c.add(
            "rooms_upload",
            "FileMessageBody",
            &res.json::<Value>().await.unwrap(),
        );
    }
    let media: Value = http
        .post(format!("{url}/api/v1/rooms.media/{secret}"))
        .header("X-User-Id", &uid)
        .header("X-Auth-Token", &token)
        .multipart(part())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    c.add("rooms_media", "RoomsMediaBody", &media);
    let file_id = media["file"]["_id"].as_str().unwrap().to_owned();
    let confirmed = call(
        &http,
        post(
            &format!("rooms.mediaConfirm/{secret}/{file_id}"),
            json!({"msg": "here", "description": "desc"}),
        ),
    )
    .await;
    c.add("media_confirm", "FileMessageBody", &confirmed);
    c.add(
        "file_prop",
        "Serialized<FileProp>",
        &confirmed["message"]["file"],
    );
    c.add(
        "attachment",
        "Serialized<MessageAttachment>",
        &confirmed["message"]["attachments"][0],
    );

    let dev = fake.room_id("dev").unwrap();
    c.add(
        "channels_history",
        "HistoryBody",
        &call(&http, get(&format!("channels.history?roomId={dev}"))).await,
    );
    c.add(
        "groups_history",
        "HistoryBody",
        &call(
            &http,
            get(&format!(
                "groups.history?roomId={secret}&showThreadMessages=true"
            )),
        )
        .await,
    );
    let im_history = call(
        &http,
        get(&format!(
            "im.history?roomId={}",
            im["room"]["_id"].as_str().unwrap()
        )),
    )
    .await;
    c.add("im_history", "HistoryBody", &im_history);

    // Every stream frame the bot received for the group (new, reply, parent update, edit,
    // uploads).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut frames = Vec::new();
    let expected = if version.starts_with('7') { 8 } else { 7 };
    while frames.len() < expected {
        let next = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("stream frames");
        let Some(Ok(Message::Text(t))) = next else {
            panic!("socket ended")
        };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["msg"] == "changed" {
            frames.push(v);
        }
    }
    for (i, f) in frames.iter().enumerate() {
        c.add(&format!("ddp_frame_{i}"), "RoomMessagesFrame", f);
    }
    c.checks
}

fn render(checks: &[Check], wire: &Path) -> String {
    let mut ts = String::new();
    ts.push_str("import type { FileProp, MessageAttachment, Serialized } from '@rocket.chat/core-typings';\n");
    ts.push_str(&format!(
        "import type {{ {} }} from '{}';\n",
        "ChannelsInfoBody, DdpMessage, FileMessageBody, GroupsInfoBody, HistoryBody, ImCreateBody, ImHistoryItem, InfoBody, LoginBody, MeBody, PostMessageBody, RestMessage, RoomMessagesFrame, RoomsMediaBody, SettingsPublicBody, Success",
        wire.display()
    ));
    ts.push_str(&format!(
        "import {{ assignable }} from '{}';\n\n",
        wire.display()
    ));
    for c in checks {
        let pretty = serde_json::to_string_pretty(&c.value).unwrap();
        ts.push_str(&format!(
            "export const {}: {} = {};\n\n",
            c.name, c.ty, pretty
        ));
        if c.name.starts_with("im_history") {
            ts.push_str(&format!(
                "for (const m of {}.messages) assignable<ImHistoryItem>(m);\n\n",
                c.name
            ));
        }
    }
    // The check must bite: a REST message whose `ts` is a number is not a message.
    ts.push_str("// @ts-expect-error ts must be an ISO string on REST\n");
    ts.push_str("export const wrong_ts: RestMessage = { _id: 'x', rid: 'r', msg: 'm', ts: 1, u: { _id: 'u', username: 'u' }, _updatedAt: '2026-01-01T00:00:00.000Z' };\n");
    ts.push_str("// @ts-expect-error a DDP message's dates are EJSON, not ISO strings\n");
    ts.push_str("export const wrong_ddp: DdpMessage = { _id: 'x', rid: 'r', msg: 'm', ts: '2026-01-01T00:00:00.000Z', u: { _id: 'u', username: 'u' }, _updatedAt: { $date: 1 } };\n");
    ts
}

#[tokio::test]
async fn fake_documents_type_check_against_rocket_chat_typings() {
    let prefix = npm_prefix();
    let tsc = prefix.join("node_modules/.bin/tsc");
    let core = prefix.join("node_modules/@rocket.chat/core-typings/package.json");
    assert!(
        tsc.exists() && core.exists(),
        "the pinned typings are missing from {}: run scripts/install-agents.sh",
        prefix.display()
    );
    let mut checks = collect("7.10.0").await;
    checks.extend(collect("8.1.0").await);
    let wire = Path::new(env!("CARGO_MANIFEST_DIR")).join("typings/wire");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("check.ts"), render(&checks, &wire)).unwrap();
    let modules = prefix.join("node_modules").canonicalize().unwrap();
    let tsconfig = json!({
        "compilerOptions": {
            "strict": true,
            "noEmit": true,
            // The typings import packages they do not depend on (mongodb, node:url);
            // their own .d.ts files are not what is being checked here.
            "skipLibCheck": true,
            "target": "ES2022",
            "module": "commonjs",
            "moduleResolution": "node",
            "lib": ["ES2022", "DOM"],
            "types": [],
            "baseUrl": ".",
            "paths": { "*": [format!("{}/*", modules.display())] },
        },
        "files": ["check.ts"],
    });
    std::fs::write(dir.path().join("tsconfig.json"), tsconfig.to_string()).unwrap();
    let out = Command::new(&tsc)
        .arg("-p")
        .arg(dir.path())
        .output()
        .expect("run tsc");
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let kept = std::env::temp_dir().join("acg-rocketchat-typings-check.ts");
        let _ = std::fs::copy(dir.path().join("check.ts"), &kept);
        panic!(
            "tsc rejected the fake's documents ({} checks; file kept at {}):\n{stdout}{}",
            checks.len(),
            kept.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(checks.len() > 40, "{} checks", checks.len());
}
