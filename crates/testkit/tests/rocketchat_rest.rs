//! The fake Rocket.Chat's REST API answers like real 7.x and 8.x servers: shapes, error bodies,
//! channel resolution, size limits, history windows, uploads and downloads, and REST faults.

use std::time::Duration;

use acg_testkit::rocketchat::{FakeOptions, FakeRocketChat, Seed, SeedRoom, SeedUser};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn seed() -> Seed {
    Seed::new()
        .with_user(
            SeedUser::new("bot", "botpw")
                .display_name("Gateway Bot")
                .role("bot")
                .id("BOT"),
        )
        .with_user(
            SeedUser::new("alice", "alicepw")
                .display_name("Alice")
                .id("ALICE"),
        )
        .with_user(SeedUser::new("bob", "bobpw").display_name("Bob").id("BOB"))
        .with_room(SeedRoom::channel("dev", &["alice", "bob"]).id("DEV"))
        .with_room(SeedRoom::group("secret", &["alice", "bot"]).id("SECRET"))
        .with_room(SeedRoom::group("hidden", &["alice"]).id("HIDDEN"))
        .with_room(SeedRoom::direct("alice", "bot"))
}

/// A plain HTTP client (reqwest is built without a default TLS provider in this workspace).
fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn start(version: &str) -> FakeRocketChat {
    FakeRocketChat::start(FakeOptions::new(version, seed()))
        .await
        .unwrap()
}

/// A REST client logged in as one user.
struct Rest {
    http: reqwest::Client,
    base: String,
    user_id: String,
    token: String,
}

impl Rest {
    async fn login(fake: &FakeRocketChat, user: &str, password: &str) -> Rest {
        let http = http();
        let res = http
            .post(format!("{}/api/v1/login", fake.url()))
            .json(&json!({ "user": user, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        Rest {
            http,
            base: fake.url(),
            user_id: body["data"]["userId"].as_str().unwrap().to_owned(),
            token: body["data"]["authToken"].as_str().unwrap().to_owned(),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(format!("{}/api/v1/{path}", self.base))
            .header("X-User-Id", &self.user_id)
            .header("X-Auth-Token", &self.token)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let res = self
            .http
            .post(format!("{}/api/v1/{path}", self.base))
            .header("X-User-Id", &self.user_id)
            .header("X-Auth-Token", &self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn upload(
        &self,
        path: &str,
        name: &str,
        bytes: &[u8],
        fields: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let part = reqwest::multipart::Part::bytes(bytes.to_vec())
            .file_name(name.to_owned())
            .mime_str("text/plain")
            .unwrap();
        let mut form = reqwest::multipart::Form::new().part("file", part);
        for (k, v) in fields {
            form = form.text((*k).to_owned(), (*v).to_owned());
        }
        let res = self
            .http
            .post(format!("{}/api/v1/{path}", self.base))
            .header("X-User-Id", &self.user_id)
            .header("X-Auth-Token", &self.token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post_text(&self, channel: &str, text: &str) -> Value {
        let (status, body) = self
            .post(
                "chat.postMessage",
                json!({ "channel": channel, "text": text }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["message"].clone()
    }
}

fn is_iso(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T')
}

#[tokio::test]
async fn login_me_info_and_settings_have_the_real_shapes() {
    let fake = start("7.10.0").await;
    let http = http();
    let body: Value = http
        .post(format!("{}/api/v1/login", fake.url()))
        .json(&json!({ "user": "bot", "password": "botpw" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success");
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["userId"], "BOT");
    assert_eq!(body["data"]["authToken"].as_str().unwrap().len(), 43);
    assert_eq!(body["data"]["me"]["username"], "bot");
    assert_eq!(body["data"]["me"]["name"], "Gateway Bot");
    assert_eq!(body["data"]["me"]["roles"], json!(["bot"]));

    let rest = Rest::login(&fake, "bot", "botpw").await;
    let (status, me) = rest.get("me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["_id"], "BOT");
    assert_eq!(me["success"], true);

    // /api/info needs no login and hides the patch level.
    let info: Value = http
        .get(format!("{}/api/info", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["version"], "7.10");
    assert_eq!(info["success"], true);

    let settings: Value = http
        .get(format!(
            "{}/api/v1/settings.public?_id=Message_MaxAllowedSize",
            fake.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        settings["settings"],
        json!([{"_id": "Message_MaxAllowedSize", "value": 5000, "enterprise": false, "requiredOnWizard": false}])
    );
    assert_eq!(settings["total"], 1);
}

#[tokio::test]
async fn unauthenticated_and_failed_logins_answer_per_version() {
    for (version, has_compat_fields) in [("7.10.0", true), ("8.1.0", false)] {
        let fake = start(version).await;
        let http = http();
        let res = http
            .get(format!("{}/api/v1/me", fake.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(body["error"], "You must be logged in to do this.");
        assert_eq!(
            body.get("status").is_some(),
            has_compat_fields,
            "{version}: {body}"
        );
        if has_compat_fields {
            assert_eq!(body["status"], "error");
            assert_eq!(body["message"], "You must be logged in to do this.");
        }
        let res = http
            .post(format!("{}/api/v1/login", fake.url()))
            .json(&json!({ "user": "bot", "password": "wrong" }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["success"], false);
        assert_eq!(
            body.get("status").is_some(),
            has_compat_fields,
            "{version}: {body}"
        );
        // A wrong token is the same 401 as no token.
        let res = http
            .get(format!("{}/api/v1/me", fake.url()))
            .header("X-User-Id", "BOT")
            .header("X-Auth-Token", "nope")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn post_message_resolves_every_channel_form_and_returns_the_document() {
    let fake = start("7.10.0").await;
    let bot = Rest::login(&fake, "bot", "botpw").await;

    // By id, of a group the bot is in.
    let (status, body) = bot
        .post(
            "chat.postMessage",
            json!({ "channel": "SECRET", "text": "  by id  " }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["success"], true);
    assert_eq!(body["channel"], "SECRET");
    assert!(body["ts"].is_i64());
    let m = &body["message"];
    assert_eq!(m["msg"], "by id", "text is trimmed");
    assert_eq!(m["rid"], "SECRET");
    assert_eq!(
        m["u"],
        json!({"_id": "BOT", "username": "bot", "name": "Gateway Bot"})
    );
    assert!(is_iso(&m["ts"]) && is_iso(&m["_updatedAt"]), "{m}");
    assert_eq!(m["_id"].as_str().unwrap().len(), 17);
    assert_eq!(
        m["md"],
        json!([{"type": "PARAGRAPH", "value": [{"type": "PLAIN_TEXT", "value": "by id"}]}])
    );
    assert_eq!(m["mentions"], json!([]));
    assert_eq!(m["groupable"], false);

    // By #name of a public channel the bot is not in: it joins first (a `uj` system message).
    let (status, body) = bot
        .post(
            "chat.postMessage",
            json!({ "channel": "#dev", "text": "hi @alice and @all" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["channel"], "#dev");
    let mentions = &body["message"]["mentions"];
    assert_eq!(
        mentions,
        &json!([
            {"_id": "all", "username": "all"},
            {"_id": "ALICE", "username": "alice", "name": "Alice", "type": "user"}
        ])
    );
    let dev = fake.messages("dev");
    assert_eq!(dev.len(), 2);
    assert_eq!(dev[0]["t"], "uj");
    assert_eq!(dev[0]["msg"], "bot");

    // By bare name, and to @user (the DM is created on the way).
    assert_eq!(bot.post_text("dev", "bare name").await["rid"], "DEV");
    let dm = bot.post_text("@bob", "hello bob").await;
    assert_eq!(dm["rid"], "BOBBOT");
    assert_eq!(fake.room_id("bob,bot").unwrap(), "BOBBOT");

    // Thread reply by roomId + tmid; the parent counts it.
    let parent = bot.post_text("SECRET", "parent").await;
    let (status, body) = bot
        .post(
            "chat.postMessage",
            json!({ "roomId": "SECRET", "text": "reply", "tmid": parent["_id"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["message"]["tmid"], parent["_id"]);
    let parent_now = fake.message(parent["_id"].as_str().unwrap()).unwrap();
    assert_eq!(parent_now["tcount"], 1);
    assert_eq!(parent_now["replies"], json!(["BOT"]));

    // Errors as the server words them.
    let (status, body) = bot
        .post(
            "chat.postMessage",
            json!({ "channel": "#nowhere", "text": "x" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"success": false, "error": "[invalid-channel]", "errorType": "invalid-channel"})
    );
    let (status, body) = bot
        .post(
            "chat.postMessage",
            json!({ "channel": "HIDDEN", "text": "x" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"success": false, "error": "error-not-allowed"})
    );
    let (status, body) = bot
        .post("chat.postMessage", json!({ "text": "no room" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "invalid-params");
}

#[tokio::test]
async fn message_size_limit_counts_utf16_units_like_the_server() {
    let options = FakeOptions {
        message_max_allowed_size: 10,
        ..FakeOptions::new("8.1.0", seed())
    };
    let fake = FakeRocketChat::start(options).await.unwrap();
    let bot = Rest::login(&fake, "bot", "botpw").await;
    let (status, _) = bot
        .post(
            "chat.postMessage",
            json!({ "channel": "SECRET", "text": "0123456789" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Five emoji are ten UTF-16 units: allowed; six are twelve: refused.
    let (status, _) = bot
        .post(
            "chat.postMessage",
            json!({ "channel": "SECRET", "text": "😀😀😀😀😀" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = bot
        .post(
            "chat.postMessage",
            json!({ "channel": "SECRET", "text": "😀😀😀😀😀😀" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"success": false, "error": "error-message-size-exceeded"})
    );
    let settings: Value = http()
        .get(format!("{}/api/v1/settings.public", fake.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let max = settings["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["_id"] == "Message_MaxAllowedSize")
        .unwrap();
    assert_eq!(max["value"], 10);
}

#[tokio::test]
async fn room_info_and_im_create_find_rooms_like_the_server() {
    let fake = start("7.10.0").await;
    let bot = Rest::login(&fake, "bot", "botpw").await;
    let (status, body) = bot.get("channels.info?roomName=dev").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["channel"]["_id"], "DEV");
    assert_eq!(body["channel"]["t"], "c");
    assert_eq!(body["channel"]["name"], "dev");
    assert_eq!(body["channel"]["usersCount"], 2);
    assert!(is_iso(&body["channel"]["ts"]));
    let (status, body) = bot.get("channels.info?roomId=DEV").await;
    assert_eq!(
        (status, &body["channel"]["name"]),
        (StatusCode::OK, &json!("dev"))
    );

    // A group is not a channel: 400 with the real message, then groups.info finds it.
    let (status, body) = bot.get("channels.info?roomName=secret").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "error-room-not-found");
    assert_eq!(
        body["error"],
        "The required \"roomId\" or \"roomName\" param provided does not match any channel [error-room-not-found]"
    );
    let (status, body) = bot.get("groups.info?roomName=secret").await;
    assert_eq!(
        (status, &body["group"]["_id"]),
        (StatusCode::OK, &json!("SECRET"))
    );
    assert_eq!(body["group"]["t"], "p");
    // Groups the caller is not in look like missing ones.
    let (status, body) = bot.get("groups.info?roomName=hidden").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "error-room-not-found");

    let (status, body) = bot.post("im.create", json!({ "username": "alice" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["room"]["_id"], "ALICEBOT");
    assert_eq!(body["room"]["rid"], "ALICEBOT");
    assert_eq!(body["room"]["t"], "d");
    assert_eq!(body["room"]["usernames"], json!(["alice", "bot"]));
    let (status, body) = bot.post("im.create", json!({ "username": "nobody" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "error-invalid-user");
}

#[tokio::test]
async fn history_is_newest_first_with_real_window_and_count_rules() {
    let fake = start("7.10.0").await;
    let alice = fake.login_as("alice").unwrap();
    let mut posted = Vec::new();
    for i in 0..5 {
        posted.push(alice.post("secret", &format!("m{i}")).await.unwrap());
    }
    let reply = alice
        .reply_in_thread("secret", posted[0]["_id"].as_str().unwrap(), "in thread")
        .await
        .unwrap();
    let bot = Rest::login(&fake, "bot", "botpw").await;
    let texts = |body: &Value| -> Vec<String> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["msg"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, body) = bot.get("groups.history?roomId=SECRET&count=3").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        texts(&body),
        vec!["m4", "m3", "m2"],
        "thread replies are hidden by default"
    );
    let (_, body) = bot
        .get("groups.history?roomId=SECRET&count=3&showThreadMessages=true")
        .await;
    assert_eq!(texts(&body), vec!["in thread", "m4", "m3"]);

    // oldest/latest are exclusive unless inclusive=true.
    let t1 = posted[1]["ts"].as_str().unwrap();
    let t3 = posted[3]["ts"].as_str().unwrap();
    let (_, body) = bot
        .get(&format!(
            "groups.history?roomId=SECRET&oldest={t1}&latest={t3}"
        ))
        .await;
    assert_eq!(texts(&body), vec!["m2"]);
    let (_, body) = bot
        .get(&format!(
            "groups.history?roomId=SECRET&oldest={t1}&latest={t3}&inclusive=true"
        ))
        .await;
    assert_eq!(texts(&body), vec!["m3", "m2", "m1"]);

    // An epoch-milliseconds `oldest` is an Invalid Date to the server: it filters nothing.
    let ms = reply["ts"].as_str().map(|_| "1777052400000").unwrap();
    let (status, body) = bot
        .get(&format!("groups.history?roomId=SECRET&oldest={ms}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(texts(&body).len(), 5);

    // Unknown parameters are rejected by the schema; other people's groups are not found.
    let (status, body) = bot.get("groups.history?roomId=SECRET&bogus=1").await;
    assert_eq!(
        (status, &body["errorType"]),
        (StatusCode::BAD_REQUEST, &json!("invalid-params"))
    );
    let (status, _) = bot.get("groups.history?roomId=HIDDEN").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // DM history by room id, and channels.history of a public room.
    alice.dm("bot", "psst").await.unwrap();
    let (status, body) = bot.get("im.history?roomId=ALICEBOT").await;
    assert_eq!(
        (status, texts(&body)),
        (StatusCode::OK, vec!["psst".to_owned()])
    );
    alice.post("dev", "public").await.unwrap();
    let (status, body) = bot.get("channels.history?roomId=DEV").await;
    assert_eq!(
        (status, texts(&body)),
        (StatusCode::OK, vec!["public".to_owned()])
    );
}

#[tokio::test]
async fn history_count_is_capped_at_one_hundred() {
    let fake = start("8.1.0").await;
    let alice = fake.login_as("alice").unwrap();
    for i in 0..120 {
        alice.post("secret", &format!("n{i}")).await.unwrap();
    }
    let bot = Rest::login(&fake, "bot", "botpw").await;
    let (_, body) = bot.get("groups.history?roomId=SECRET&count=200").await;
    assert_eq!(body["messages"].as_array().unwrap().len(), 100);
    let (_, body) = bot.get("groups.history?roomId=SECRET").await;
    assert_eq!(
        body["messages"].as_array().unwrap().len(),
        50,
        "default count"
    );
}

#[tokio::test]
async fn uploads_follow_the_version_and_files_need_auth() {
    // 7.x: rooms.upload in one request.
    let fake = start("7.10.0").await;
    let bot = Rest::login(&fake, "bot", "botpw").await;
    let (status, body) = bot
        .upload(
            "rooms.upload/SECRET",
            "notes.txt",
            b"hello file",
            &[("msg", "caption"), ("description", "the notes")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let m = &body["message"];
    assert_eq!(m["msg"], "caption");
    let file_id = m["file"]["_id"].as_str().unwrap().to_owned();
    assert_eq!(m["file"]["name"], "notes.txt");
    assert_eq!(m["file"]["type"], "text/plain");
    assert_eq!(m["file"]["size"], 10);
    assert_eq!(m["files"][0]["_id"], json!(file_id));
    let att = &m["attachments"][0];
    assert_eq!(att["type"], "file");
    assert_eq!(att["title"], "notes.txt");
    assert_eq!(att["description"], "the notes");
    assert_eq!(
        att["title_link"],
        json!(format!("/file-upload/{file_id}/notes.txt"))
    );
    assert_eq!(att["title_link_download"], true);
    let link = att["title_link"].as_str().unwrap();
    let ok = bot
        .http
        .get(format!("{}{link}", fake.url()))
        .header("X-User-Id", &bot.user_id)
        .header("X-Auth-Token", &bot.token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()["content-type"], "text/plain");
    assert_eq!(ok.bytes().await.unwrap().as_ref(), b"hello file");
    let denied = http()
        .get(format!("{}{link}", fake.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let cookie = bot
        .http
        .get(format!("{}{link}", fake.url()))
        .header(
            "Cookie",
            format!("rc_uid={}; rc_token={}", bot.user_id, bot.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(cookie.status(), StatusCode::OK);
    // Not a member of the room: 403 before the body is read.
    let (status, _) = bot.upload("rooms.upload/HIDDEN", "x.txt", b"x", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // 8.x: rooms.upload is gone; rooms.media + rooms.mediaConfirm instead.
    let fake = start("8.1.0").await;
    let bot = Rest::login(&fake, "bot", "botpw").await;
    let (status, _) = bot
        .upload("rooms.upload/SECRET", "notes.txt", b"x", &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = bot
        .upload("rooms.media/SECRET", "a b.txt", b"two", &[])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["file"]["_id"].as_str().unwrap().to_owned();
    assert_eq!(
        body["file"]["url"],
        json!(format!("/file-upload/{id}/a%20b.txt"))
    );
    assert!(
        fake.messages("secret").is_empty(),
        "no message before the confirm"
    );
    let (status, body) = bot
        .post(
            &format!("rooms.mediaConfirm/SECRET/{id}"),
            json!({ "msg": "here it is" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["message"]["msg"], "here it is");
    assert_eq!(body["message"]["file"]["_id"], json!(id));
    let (status, body) = bot.post("rooms.mediaConfirm/SECRET/nope", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "invalid-file");
    assert_eq!(fake.file_bytes(&id).unwrap(), b"two");

    // 7.x has rooms.media too.
    let fake = start("7.10.0").await;
    let bot = Rest::login(&fake, "bot", "botpw").await;
    let (status, _) = bot.upload("rooms.media/SECRET", "n.txt", b"x", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn rest_faults_fail_delay_and_expire() {
    let fake = start("7.10.0").await;
    let bot = Rest::login(&fake, "bot", "botpw").await;

    fake.fail_next_rest(2, 503);
    assert_eq!(bot.get("me").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(bot.get("me").await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(bot.get("me").await.0, StatusCode::OK);

    fake.fail_next_rest(1, 401);
    let (status, body) = bot.get("me").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "You must be logged in to do this.");
    assert_eq!(bot.get("me").await.0, StatusCode::OK);

    // A delay longer than the client's patience times the call out; without it, it works.
    fake.set_rest_delay(Duration::from_secs(3));
    let slow = bot
        .http
        .get(format!("{}/api/info", fake.url()))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(slow.unwrap_err().is_timeout());
    fake.set_rest_delay(Duration::ZERO);
    assert_eq!(bot.get("me").await.0, StatusCode::OK);

    // Revoked tokens: 401 until a new login.
    fake.expire_tokens();
    assert_eq!(bot.get("me").await.0, StatusCode::UNAUTHORIZED);
    let again = Rest::login(&fake, "bot", "botpw").await;
    assert_eq!(again.get("me").await.0, StatusCode::OK);

    let log = fake.request_log();
    assert!(log
        .iter()
        .any(|r| r.path == "/api/v1/login" && r.body["user"] == "bot"));
    assert_eq!(log.iter().filter(|r| r.status == 503).count(), 2);
    assert!(log
        .iter()
        .any(|r| r.auth_token.as_deref() == Some(again.token.as_str())));
}

#[tokio::test]
async fn stop_and_restart_keep_the_port_and_the_database() {
    let fake = start("7.10.0").await;
    let bot = Rest::login(&fake, "bot", "botpw").await;
    bot.post_text("SECRET", "before").await;
    let url = fake.url();

    fake.stop().await;
    assert!(!fake.is_running());
    let down = http().get(format!("{url}/api/info")).send().await;
    assert!(down.unwrap_err().is_connect());

    fake.restart().await.unwrap();
    assert_eq!(fake.url(), url);
    // Same token, same messages: the database survived.
    let (status, body) = bot.get("groups.history?roomId=SECRET").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["messages"][0]["msg"], "before");
    // Restarting a running server is a stop + start.
    fake.restart().await.unwrap();
    assert_eq!(bot.get("me").await.0, StatusCode::OK);
}

#[tokio::test]
async fn edits_keep_the_id_and_add_edited_fields() {
    let fake = start("8.1.0").await;
    let bot = Rest::login(&fake, "bot", "botpw").await;
    let m = bot.post_text("SECRET", "first").await;
    let (status, body) = bot
        .post(
            "chat.update",
            json!({ "roomId": "SECRET", "msgId": m["_id"], "text": "second @alice" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let edited = &body["message"];
    assert_eq!(edited["_id"], m["_id"]);
    assert_eq!(edited["msg"], "second @alice");
    assert!(is_iso(&edited["editedAt"]));
    assert_eq!(edited["editedBy"], json!({"_id": "BOT", "username": "bot"}));
    assert_eq!(edited["mentions"][0]["username"], "alice");
    assert_eq!(edited["ts"], m["ts"], "the original ts stays");
    // Somebody else's message cannot be edited.
    let alice = fake.login_as("alice").unwrap();
    let theirs = alice.post("secret", "mine").await.unwrap();
    let (status, body) = bot
        .post(
            "chat.update",
            json!({ "roomId": "SECRET", "msgId": theirs["_id"], "text": "hijack" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errorType"], "error-action-not-allowed");
}
