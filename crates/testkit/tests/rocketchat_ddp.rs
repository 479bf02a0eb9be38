//! The fake Rocket.Chat's DDP endpoint, driven by a plain tokio-tungstenite client: handshake,
//! heartbeats, login (digest and resume), room streams for new, edited, threaded and system
//! messages, typing, subscription errors, and the socket-level faults.

use std::time::Duration;

use acg_testkit::rocketchat::{
    password_digest, FakeOptions, FakeRocketChat, MalformedFrames, Seed, SeedRoom, SeedUser,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Generous: the machine is small and shared.
const WAIT: Duration = Duration::from_secs(20);

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
        .with_user(SeedUser::new("bob", "bobpw").id("BOB"))
        .with_room(SeedRoom::channel("dev", &["alice", "bob"]).id("DEV"))
        .with_room(SeedRoom::group("secret", &["alice", "bot"]).id("SECRET"))
        .with_room(SeedRoom::group("hidden", &["alice"]).id("HIDDEN"))
}

/// Starts the fake. Tests that read frames one by one turn the server heartbeat off, so a
/// slow run cannot slip a `ping` between the frames they expect.
async fn start(options: FakeOptions) -> FakeRocketChat {
    let options = if options.heartbeat == FakeOptions::default().heartbeat {
        FakeOptions {
            heartbeat: None,
            ..options
        }
    } else {
        options
    };
    FakeRocketChat::start(options).await.unwrap()
}

/// What the client saw next.
#[derive(Debug)]
enum Next {
    Frame(Value),
    Text(String),
    Closed,
}

/// A bare DDP client: it does nothing on its own except what each test asks.
struct Ddp {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ddp {
    async fn open(fake: &FakeRocketChat) -> Ddp {
        let (ws, _) = tokio_tungstenite::connect_async(fake.ws_url())
            .await
            .unwrap();
        Ddp { ws }
    }

    /// Opens, checks Meteor's greeting, and completes the DDP handshake.
    async fn connect(fake: &FakeRocketChat) -> Ddp {
        let mut c = Ddp::open(fake).await;
        assert_eq!(c.frame().await, json!({"server_id": "0"}));
        c.send(json!({"msg": "connect", "version": "1", "support": ["1"]}))
            .await;
        let connected = c.frame().await;
        assert_eq!(connected["msg"], "connected");
        assert_eq!(connected["session"].as_str().unwrap().len(), 17);
        c
    }

    async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Next {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => panic!("no frame within {WAIT:?}"),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Next::Closed
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    return match serde_json::from_str::<Value>(&t) {
                        Ok(v) if v.is_object() => Next::Frame(v),
                        _ => Next::Text(t.to_string()),
                    }
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    async fn frame(&mut self) -> Value {
        match self.next().await {
            Next::Frame(v) => v,
            other => panic!("expected a JSON frame, got {other:?}"),
        }
    }

    /// Skips frames (answering server pings) until one matches.
    async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let f = self.frame().await;
            if f["msg"] == "ping" {
                self.send(json!({"msg": "pong"})).await;
                continue;
            }
            if pred(&f) {
                return f;
            }
        }
    }

    async fn call(&mut self, id: &str, method: &str, params: Value) -> Value {
        self.send(json!({"msg": "method", "id": id, "method": method, "params": params}))
            .await;
        self.until(|f| f["msg"] == "result" && f["id"] == id).await
    }

    async fn login(&mut self, user: &str, password: &str) -> Value {
        let params = json!([{"user": {"username": user}, "password": {"digest": password_digest(password), "algorithm": "sha-256"}}]);
        self.call("login-1", "login", params).await
    }

    async fn sub(&mut self, id: &str, rid: &str) -> Value {
        self.send(
            json!({"msg": "sub", "id": id, "name": "stream-room-messages", "params": [rid, false]}),
        )
        .await;
        self.until(|f| {
            (f["msg"] == "ready" && f["subs"][0] == id) || (f["msg"] == "nosub" && f["id"] == id)
        })
        .await
    }

    async fn closed(&mut self) -> bool {
        loop {
            match self.next().await {
                Next::Closed => return true,
                Next::Frame(f) if f["msg"] == "ping" => continue,
                Next::Frame(_) | Next::Text(_) => continue,
            }
        }
    }
}

fn room_doc(frame: &Value) -> &Value {
    &frame["fields"]["args"][0]
}

#[tokio::test]
async fn handshake_ping_pong_and_protocol_errors() {
    let fake = start(FakeOptions::new("7.10.0", seed())).await;
    let mut c = Ddp::open(&fake).await;
    assert_eq!(c.frame().await, json!({"server_id": "0"}));
    // Anything before `connect` is refused; garbage is dropped silently.
    c.send(json!({"msg": "ping"})).await;
    let err = c.frame().await;
    assert_eq!(err["msg"], "error");
    assert_eq!(err["reason"], "Must connect first");
    c.ws.send(Message::Text("not json".into())).await.unwrap();
    c.send(json!({"msg": "connect", "version": "1", "support": ["1"]}))
        .await;
    assert_eq!(c.frame().await["msg"], "connected");
    c.send(json!({"msg": "ping", "id": "p1"})).await;
    assert_eq!(c.frame().await, json!({"msg": "pong", "id": "p1"}));
    c.send(json!({"msg": "ping"})).await;
    assert_eq!(c.frame().await, json!({"msg": "pong"}));
    c.send(json!({"msg": "connect", "version": "1"})).await;
    assert_eq!(c.frame().await["reason"], "Already connected");
    c.send(json!({"msg": "teleport"})).await;
    assert_eq!(c.frame().await["reason"], "Bad request");
    let r = c.call("m1", "noSuchMethod", json!([])).await;
    assert_eq!(r["error"]["error"], 404);
    assert_eq!(
        r["error"]["message"],
        "Method 'noSuchMethod' not found [404]"
    );

    // An unsupported protocol version fails the handshake.
    let mut old = Ddp::open(&fake).await;
    old.frame().await;
    old.send(json!({"msg": "connect", "version": "0.9"})).await;
    assert_eq!(old.frame().await, json!({"msg": "failed", "version": "1"}));
    assert!(old.closed().await);
}

#[tokio::test]
async fn server_heartbeat_pings_and_closes_silent_clients() {
    let options = FakeOptions {
        heartbeat: Some(Duration::from_millis(300)),
        ..FakeOptions::new("8.1.0", seed())
    };
    let fake = start(options).await;
    // A client that answers pings stays connected.
    let mut polite = Ddp::connect(&fake).await;
    for _ in 0..3 {
        assert_eq!(polite.frame().await, json!({"msg": "ping"}));
        polite.send(json!({"msg": "pong"})).await;
    }
    polite
        .send(json!({"msg": "ping", "id": "still-here"}))
        .await;
    polite
        .until(|f| f["msg"] == "pong" && f["id"] == "still-here")
        .await;
    // One that never answers is dropped after ping + timeout.
    let mut silent = Ddp::connect(&fake).await;
    assert_eq!(silent.frame().await, json!({"msg": "ping"}));
    assert!(matches!(silent.next().await, Next::Closed));
}

#[tokio::test]
async fn login_by_digest_and_by_resume_token() {
    let fake = start(FakeOptions::new("7.10.0", seed())).await;
    let mut c = Ddp::connect(&fake).await;
    let params = json!([{"user": {"username": "bot"}, "password": {"digest": password_digest("botpw"), "algorithm": "sha-256"}}]);
    c.send(json!({"msg": "method", "id": "a1", "method": "login", "params": params}))
        .await;
    // Meteor: the logged-in user's document, the write fence, then the result.
    let added = c.frame().await;
    assert_eq!(
        added,
        json!({"msg": "added", "collection": "users", "id": "BOT", "fields": {"username": "bot"}})
    );
    assert_eq!(
        c.frame().await,
        json!({"msg": "updated", "methods": ["a1"]})
    );
    let result = c.frame().await;
    assert_eq!(result["msg"], "result");
    assert_eq!(result["result"]["id"], "BOT");
    assert_eq!(result["result"]["type"], "password");
    assert!(result["result"]["tokenExpires"]["$date"].is_i64());
    let token = result["result"]["token"].as_str().unwrap().to_owned();

    // Wrong password.
    let mut c2 = Ddp::connect(&fake).await;
    let bad = c2.login("bot", "nope").await;
    assert_eq!(bad["error"]["error"], 403);
    assert_eq!(bad["error"]["errorType"], "Meteor.Error");

    // Resume with the token from the first connection, then with a bogus one.
    let mut c3 = Ddp::connect(&fake).await;
    let resumed = c3.call("r1", "login", json!([{"resume": token}])).await;
    assert_eq!(resumed["result"]["id"], "BOT");
    assert_eq!(resumed["result"]["type"], "resume");
    assert_eq!(resumed["result"]["token"], json!(token));
    let bogus = c2.call("r2", "login", json!([{"resume": "bogus"}])).await;
    assert_eq!(
        bogus["error"]["reason"],
        "You've been logged out by the server. Please log in again."
    );

    // A REST login token resumes over DDP too.
    let http = {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::new()
    };
    let rest: Value = http
        .post(format!("{}/api/v1/login", fake.url()))
        .json(&json!({"user": "alice", "password": "alicepw"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c2
        .call(
            "r3",
            "login",
            json!([{"resume": rest["data"]["authToken"]}]),
        )
        .await;
    assert_eq!(r["result"]["id"], "ALICE");
}

#[tokio::test]
async fn room_stream_carries_new_edited_threaded_and_system_messages() {
    let fake = start(FakeOptions::new("7.10.0", seed())).await;
    let mut c = Ddp::connect(&fake).await;
    c.login("bot", "botpw").await;
    let ready = c.sub("s1", "SECRET").await;
    assert_eq!(ready, json!({"msg": "ready", "subs": ["s1"]}));

    let alice = fake.login_as("alice").unwrap();
    let posted = alice.post("secret", "hello @bot see #dev").await.unwrap();
    let f = c.until(|f| f["msg"] == "changed").await;
    assert_eq!(f["collection"], "stream-room-messages");
    assert_eq!(f["id"], "id");
    assert_eq!(f["fields"]["eventName"], "SECRET");
    let doc = room_doc(&f);
    assert_eq!(doc["_id"], posted["_id"]);
    assert_eq!(doc["rid"], "SECRET");
    assert_eq!(doc["msg"], "hello @bot see #dev");
    // Dates travel as EJSON over DDP, as ISO strings over REST.
    let ts = doc["ts"]["$date"].as_i64().unwrap();
    assert!(doc["_updatedAt"]["$date"].is_i64());
    assert!(posted["ts"].is_string());
    assert_eq!(
        doc["u"],
        json!({"_id": "ALICE", "username": "alice", "name": "Alice"})
    );
    assert_eq!(
        doc["mentions"],
        json!([{"_id": "BOT", "username": "bot", "name": "Gateway Bot", "type": "user"}])
    );
    assert_eq!(
        doc["channels"],
        json!([{"_id": "DEV", "name": "dev", "fname": "dev"}])
    );
    assert!(doc.get("t").is_none());

    // An edit: same _id, same ts, editedAt/editedBy.
    alice
        .edit(posted["_id"].as_str().unwrap(), "hello again")
        .await
        .unwrap();
    let e = c.until(|f| f["msg"] == "changed").await;
    let edited = room_doc(&e);
    assert_eq!(edited["_id"], posted["_id"]);
    assert_eq!(edited["ts"]["$date"], json!(ts));
    assert_eq!(edited["msg"], "hello again");
    assert!(edited["editedAt"]["$date"].is_i64());
    assert_eq!(
        edited["editedBy"],
        json!({"_id": "ALICE", "username": "alice"})
    );

    // A thread reply, then the parent again with its counters.
    let reply = alice
        .reply_in_thread("secret", posted["_id"].as_str().unwrap(), "threaded")
        .await
        .unwrap();
    let r = c.until(|f| f["msg"] == "changed").await;
    assert_eq!(room_doc(&r)["_id"], reply["_id"]);
    assert_eq!(room_doc(&r)["tmid"], posted["_id"]);
    let p = c.until(|f| f["msg"] == "changed").await;
    assert_eq!(room_doc(&p)["_id"], posted["_id"]);
    assert_eq!(room_doc(&p)["tcount"], 1);

    // A DM from a human reaches a subscription on the DM room id.
    let dm = alice.dm("bot", "psst").await.unwrap();
    let rid = dm["rid"].as_str().unwrap().to_owned();
    assert_eq!(c.sub("s2", &rid).await["msg"], "ready");
    alice.dm("bot", "again").await.unwrap();
    let d = c
        .until(|f| f["msg"] == "changed" && f["fields"]["eventName"] == rid)
        .await;
    assert_eq!(room_doc(&d)["msg"], "again");

    // Another user's subscription on #general sees a member's post.
    let mut watcher = Ddp::connect(&fake).await;
    watcher.login("alice", "alicepw").await;
    assert_eq!(watcher.sub("w1", "GENERAL").await["msg"], "ready");
    let bob = fake.login_as("bob").unwrap();
    bob.post("general", "bob in general").await.unwrap();
    let g = watcher.until(|f| f["msg"] == "changed").await;
    assert_eq!(room_doc(&g)["msg"], "bob in general");

    // unsub → nosub.
    c.send(json!({"msg": "unsub", "id": "s1"})).await;
    assert_eq!(
        c.until(|f| f["msg"] == "nosub").await,
        json!({"msg": "nosub", "id": "s1"})
    );
}

#[tokio::test]
async fn joining_a_channel_streams_a_uj_system_message() {
    let fake = start(FakeOptions::new("8.1.0", seed())).await;
    let mut c = Ddp::connect(&fake).await;
    c.login("alice", "alicepw").await;
    assert_eq!(c.sub("s", "DEV").await["msg"], "ready");
    // The bot is not in #dev; posting there joins it first.
    let bot = fake.login_as("bot").unwrap();
    bot.post("dev", "hello dev").await.unwrap();
    let first = c.until(|f| f["msg"] == "changed").await;
    assert_eq!(room_doc(&first)["t"], "uj");
    assert_eq!(room_doc(&first)["msg"], "bot");
    assert_eq!(room_doc(&first)["groupable"], false);
    let second = c.until(|f| f["msg"] == "changed").await;
    assert_eq!(room_doc(&second)["msg"], "hello dev");
}

#[tokio::test]
async fn subscriptions_are_refused_where_a_real_server_refuses_them() {
    let fake = start(FakeOptions::new("7.10.0", seed())).await;
    let mut c = Ddp::connect(&fake).await;
    // Not logged in yet.
    let refused = c.sub("s0", "SECRET").await;
    assert_eq!(refused["msg"], "nosub");
    assert_eq!(refused["error"]["error"], "not-allowed");
    assert_eq!(refused["error"]["message"], "[not-allowed]");
    c.login("bot", "botpw").await;
    // A private group the bot is not in, a room that does not exist, an unknown publication.
    assert_eq!(c.sub("s1", "HIDDEN").await["error"]["error"], "not-allowed");
    assert_eq!(c.sub("s2", "NOPE").await["error"]["error"], "not-allowed");
    c.send(json!({"msg": "sub", "id": "s3", "name": "stream-nothing", "params": ["x"]}))
        .await;
    let unknown = c.until(|f| f["id"] == "s3").await;
    assert_eq!(unknown["error"]["error"], 404);
    // Public channels are readable without membership (preview-c-room).
    assert_eq!(c.sub("s4", "DEV").await["msg"], "ready");
}

#[tokio::test]
async fn typing_is_recorded_and_relayed() {
    let fake = start(FakeOptions::new("7.10.0", seed())).await;
    let mut alice = Ddp::connect(&fake).await;
    alice.login("alice", "alicepw").await;
    alice
        .send(json!({"msg": "sub", "id": "t", "name": "stream-notify-room", "params": ["SECRET/user-activity", false]}))
        .await;
    alice.until(|f| f["msg"] == "ready").await;

    let mut bot = Ddp::connect(&fake).await;
    bot.login("bot", "botpw").await;
    let on = bot
        .call(
            "ty1",
            "stream-notify-room",
            json!(["SECRET/user-activity", "bot", ["user-typing"]]),
        )
        .await;
    assert!(
        on.get("result").is_none() && on.get("error").is_none(),
        "{on}"
    );
    let relayed = alice.until(|f| f["msg"] == "changed").await;
    assert_eq!(relayed["collection"], "stream-notify-room");
    assert_eq!(
        relayed["fields"],
        json!({"eventName": "SECRET/user-activity", "args": ["bot", ["user-typing"]]})
    );
    bot.call(
        "ty2",
        "stream-notify-room",
        json!(["SECRET/user-activity", "bot", []]),
    )
    .await;
    // Typing as somebody else is accepted by the method but not relayed.
    bot.call(
        "ty3",
        "stream-notify-room",
        json!(["SECRET/user-activity", "alice", ["user-typing"]]),
    )
    .await;

    let events = fake.typing_events("secret");
    assert_eq!(events.len(), 3);
    assert!(events[0].is_typing() && events[0].accepted);
    assert!(!events[1].is_typing() && events[1].accepted);
    assert!(!events[2].accepted);
    assert_eq!(events[0].username, "bot");
    assert_eq!(events[0].event, "user-activity");
    let frames = fake.ddp_frames();
    assert!(frames
        .iter()
        .any(|f| f.text.contains("\"stream-notify-room\"")));
}

#[tokio::test]
async fn dropped_sockets_and_malformed_frames() {
    let fake = start(FakeOptions::new("7.10.0", seed())).await;
    let mut c = Ddp::connect(&fake).await;
    c.login("bot", "botpw").await;
    assert_eq!(fake.open_sockets(), 1);

    for kind in MalformedFrames::ALL {
        fake.send_malformed_frames(kind);
        let expected = kind.frames();
        for want in expected {
            let got = match c.next().await {
                Next::Frame(v) => v.to_string(),
                Next::Text(t) => t,
                Next::Closed => panic!("closed while expecting {want}"),
            };
            assert_eq!(got, want);
        }
    }
    // The session still works after the garbage.
    c.send(json!({"msg": "ping", "id": "after"})).await;
    c.until(|f| f["id"] == "after").await;

    fake.drop_all_sockets();
    assert!(c.closed().await);
    // Reconnecting works at once.
    let mut again = Ddp::connect(&fake).await;
    again.login("bot", "botpw").await;
}

#[tokio::test]
async fn expired_tokens_close_ddp_sessions_logged_in_with_them() {
    let fake = start(FakeOptions::new("8.1.0", seed())).await;
    let mut logged_in = Ddp::connect(&fake).await;
    logged_in.login("bot", "botpw").await;
    let mut anonymous = Ddp::connect(&fake).await;
    fake.expire_tokens();
    assert!(logged_in.closed().await);
    anonymous.send(json!({"msg": "ping", "id": "x"})).await;
    anonymous.until(|f| f["id"] == "x").await;
}

#[tokio::test]
async fn stop_closes_sockets_and_restart_accepts_new_ones() {
    let fake = start(FakeOptions::new("7.10.0", seed())).await;
    let mut c = Ddp::connect(&fake).await;
    let token = c.login("bot", "botpw").await["result"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.stop().await;
    assert!(c.closed().await);
    assert!(tokio_tungstenite::connect_async(fake.ws_url())
        .await
        .is_err());
    fake.restart().await.unwrap();
    let mut back = Ddp::connect(&fake).await;
    // Login tokens live in the database and survive the restart.
    let r = back.call("r", "login", json!([{"resume": token}])).await;
    assert_eq!(r["result"]["id"], "BOT");
    assert_eq!(back.sub("s", "SECRET").await["msg"], "ready");
    fake.login_as("alice")
        .unwrap()
        .post("secret", "after restart")
        .await
        .unwrap();
    let f = back.until(|f| f["msg"] == "changed").await;
    assert_eq!(room_doc(&f)["msg"], "after restart");
}

#[tokio::test]
async fn my_messages_stream_covers_every_accessible_room() {
    let fake = start(FakeOptions::new("7.10.0", seed())).await;
    let mut c = Ddp::connect(&fake).await;
    c.login("bot", "botpw").await;
    assert_eq!(c.sub("all", "__my_messages__").await["msg"], "ready");
    let alice = fake.login_as("alice").unwrap();
    alice.post("hidden", "not for the bot").await.unwrap();
    alice.post("secret", "for the bot").await.unwrap();
    let f = c.until(|f| f["msg"] == "changed").await;
    assert_eq!(f["fields"]["eventName"], "__my_messages__");
    assert_eq!(room_doc(&f)["msg"], "for the bot");
    assert_eq!(
        f["fields"]["args"][1],
        json!({"roomParticipant": true, "roomType": "p", "roomName": "secret"})
    );
}
