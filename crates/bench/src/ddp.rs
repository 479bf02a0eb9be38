//! A minimal Rocket.Chat client for the harness: a DDP WebSocket that logs in, subscribes to
//! `stream-room-messages` of some rooms and reports every message document with the instant
//! its frame arrived, plus a REST poster (`chat.postMessage`).
//!
//! The harness uses it twice: as the **observer** (a user watching the rooms, who sees the
//! gateway's replies exactly when a chat client would), and as the **floor relay** (logged in
//! as the bot, answering each message via REST at once: the fastest any gateway could be
//! against this server).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// One message document seen on a subscription.
#[derive(Debug, Clone)]
pub struct ChatEvent {
    /// When the frame arrived (before it was parsed).
    pub at: Instant,
    /// The room id.
    pub room_id: String,
    /// The message id.
    pub id: String,
    /// The author's username.
    pub username: String,
    /// The text.
    pub text: String,
    /// A system message (`t` set) or an edit (`editedAt` set): not a new chat message.
    pub not_a_post: bool,
}

/// A logged-in DDP connection that streams [`ChatEvent`]s of subscribed rooms.
pub struct DdpClient {
    out: mpsc::UnboundedSender<String>,
    ready: Arc<(Mutex<HashSet<String>>, Notify)>,
    next_id: Mutex<u64>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for DdpClient {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl DdpClient {
    /// Connects to `ws_url`, logs in as `username` (password digest) and starts streaming
    /// room messages into the returned receiver.
    pub async fn connect(
        ws_url: &str,
        username: &str,
        password: &str,
    ) -> Result<(DdpClient, mpsc::UnboundedReceiver<ChatEvent>)> {
        let (socket, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .with_context(|| format!("cannot open {ws_url}"))?;
        let (mut sink, mut stream) = socket.split();
        let send = |v: Value| Message::Text(v.to_string().into());
        sink.send(send(
            json!({"msg": "connect", "version": "1", "support": ["1"]}),
        ))
        .await?;
        sink.send(send(
            json!({"msg": "method", "method": "login", "id": "login",
            "params": [{"user": {"username": username},
                        "password": {"digest": sha256_hex(password), "algorithm": "sha-256"}}]}),
        ))
        .await?;
        // Read until the login result.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = tokio::time::timeout(left, stream.next())
                .await
                .map_err(|_| anyhow!("DDP login timed out"))?
                .ok_or_else(|| anyhow!("DDP socket closed during login"))??;
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if v["msg"] == "result" && v["id"] == "login" {
                if v.get("error").is_some() {
                    bail!("DDP login as {username} failed: {}", v["error"]);
                }
                break;
            }
        }

        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
        let writer = tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let ready: Arc<(Mutex<HashSet<String>>, Notify)> = Arc::default();
        let reader = {
            let ready = ready.clone();
            let out = out_tx.clone();
            tokio::spawn(async move {
                while let Some(Ok(frame)) = stream.next().await {
                    let at = Instant::now();
                    let Message::Text(text) = frame else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    match v["msg"].as_str() {
                        Some("ping") => {
                            let _ = out.send(json!({"msg": "pong"}).to_string());
                        }
                        Some("ready") => {
                            let subs = v["subs"].as_array().cloned().unwrap_or_default();
                            let (set, notify) = &*ready;
                            let mut set = set.lock().unwrap_or_else(|p| p.into_inner());
                            set.extend(subs.iter().filter_map(|s| s.as_str().map(str::to_owned)));
                            notify.notify_waiters();
                        }
                        Some("changed") if v["collection"] == "stream-room-messages" => {
                            let doc = &v["fields"]["args"][0];
                            let event = ChatEvent {
                                at,
                                room_id: doc["rid"].as_str().unwrap_or_default().to_owned(),
                                id: doc["_id"].as_str().unwrap_or_default().to_owned(),
                                username: doc["u"]["username"]
                                    .as_str()
                                    .unwrap_or_default()
                                    .to_owned(),
                                text: doc["msg"].as_str().unwrap_or_default().to_owned(),
                                not_a_post: doc.get("t").is_some() || doc.get("editedAt").is_some(),
                            };
                            if events_tx.send(event).is_err() {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            })
        };
        Ok((
            DdpClient {
                out: out_tx,
                ready,
                next_id: Mutex::new(0),
                reader,
                writer,
            },
            events_rx,
        ))
    }

    /// Subscribes to the messages of these rooms (ids) and waits until the server confirms
    /// every subscription.
    pub async fn subscribe(&self, room_ids: &[String]) -> Result<()> {
        let mut ids = Vec::new();
        for rid in room_ids {
            let id = {
                let mut n = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
                *n += 1;
                format!("sub{n}")
            };
            self.out
                .send(
                    json!({"msg": "sub", "id": id, "name": "stream-room-messages",
                        "params": [rid, false]})
                    .to_string(),
                )
                .map_err(|_| anyhow!("DDP socket closed"))?;
            ids.push(id);
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (set, notify) = &*self.ready;
            let waiting = notify.notified();
            {
                let set = set.lock().unwrap_or_else(|p| p.into_inner());
                if ids.iter().all(|id| set.contains(id)) {
                    return Ok(());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("subscriptions not confirmed within 60 s");
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), waiting).await;
        }
    }
}

/// A REST session (`POST /api/v1/login`, then `chat.postMessage`) over one keep-alive client.
pub struct RestPoster {
    client: reqwest::Client,
    base: String,
    user_id: String,
    token: String,
}

impl RestPoster {
    /// Logs in at `base` (`http://127.0.0.1:<port>`).
    pub async fn login(base: &str, username: &str, password: &str) -> Result<RestPoster> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("HTTP client")?;
        let answer: Value = client
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"user": username, "password": password}))
            .send()
            .await?
            .json()
            .await?;
        let data = &answer["data"];
        let (Some(user_id), Some(token)) = (data["userId"].as_str(), data["authToken"].as_str())
        else {
            bail!("REST login as {username} failed: {answer}");
        };
        Ok(RestPoster {
            client,
            base: base.to_owned(),
            user_id: user_id.to_owned(),
            token: token.to_owned(),
        })
    }

    /// Posts `text` to a room (by id).
    pub async fn post(&self, room_id: &str, text: &str) -> Result<()> {
        let answer: Value = self
            .client
            .post(format!("{}/api/v1/chat.postMessage", self.base))
            .header("X-User-Id", &self.user_id)
            .header("X-Auth-Token", &self.token)
            .json(&json!({"roomId": room_id, "text": text}))
            .send()
            .await?
            .json()
            .await?;
        if answer["success"] != true {
            bail!("chat.postMessage failed: {answer}");
        }
        Ok(())
    }
}
