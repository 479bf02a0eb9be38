//! Rocket.Chat's REST API (`/api/v1/…`), as far as the bot uses it: login, server version
//! and message size limit, posting, uploads (`rooms.media` on 8.x, `rooms.upload` before),
//! room lookup, history and file downloads.
//!
//! Every authenticated call carries `X-Auth-Token`/`X-User-Id`. A `401` triggers one
//! re-login (under a lock, and only if no other call already replaced the rejected token)
//! and one retry. TLS is rustls with the ring provider and the platform's certificate
//! verifier; there is no native TLS.

use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use tracing::{debug, info};

use acg_core::RoomKind;

/// A failed REST call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// The server could not be reached, or the call timed out.
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The server refused the credentials.
    #[error("login refused: {0}")]
    LoginRefused(String),
    /// An HTTP error status.
    #[error("{endpoint} answered HTTP {status}: {body}")]
    Status {
        /// The endpoint called.
        endpoint: String,
        /// The status code.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The call was understood and refused (`success: false`).
    #[error("{endpoint} failed: {message}")]
    Api {
        /// The endpoint called.
        endpoint: String,
        /// The server's error text.
        message: String,
    },
    /// The response was not what the API promises.
    #[error("unexpected answer from {endpoint}: {detail}")]
    Decode {
        /// The endpoint called.
        endpoint: String,
        /// What was wrong.
        detail: String,
    },
    /// A local file could not be read.
    #[error("cannot read {path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        detail: String,
    },
}

impl RestError {
    /// The HTTP status, for status errors.
    pub fn status(&self) -> Option<u16> {
        match self {
            RestError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth retrying: the server was unreachable, overloaded or failed internally.
    pub fn is_transient(&self) -> bool {
        match self {
            RestError::Transport(_) => true,
            RestError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// Credentials of a logged-in REST session (the token also works as a DDP resume token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `authToken`.
    pub token: String,
    /// `userId`.
    pub user_id: String,
}

/// A room as the server describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// `_id`.
    pub id: String,
    /// `name` (`fname` for rooms without one; the id as a last resort).
    pub name: String,
    /// From `t`: `c` channel, `p` group, `d` direct message.
    pub kind: RoomKind,
}

/// Timeouts of REST calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestTimeouts {
    /// Ordinary API calls.
    pub request: Duration,
    /// Uploads (downloads have their own per-file limit).
    pub transfer: Duration,
}

/// A REST client for one server and one bot account.
pub struct RestClient {
    base: String,
    username: String,
    password: String,
    api: reqwest::Client,
    transfer: reqwest::Client,
    session: RwLock<Option<Session>>,
    login_lock: tokio::sync::Mutex<()>,
}

/// How much of an error body goes into an error message.
const BODY_SNIPPET: usize = 300;
/// Idle connections kept for reuse per client: enough for a room's reply, its typing calls
/// and another room's at the same time.
const IDLE_CONNECTIONS: usize = 4;

impl RestClient {
    /// A client for `base` (no trailing `/`) logging in as `username`.
    pub fn new(
        base: &str,
        username: &str,
        password: &str,
        tls: rustls::ClientConfig,
        timeouts: RestTimeouts,
    ) -> Result<Self, String> {
        let build = |timeout: Duration| {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .connect_timeout(Duration::from_secs(10).min(timeout))
                .timeout(timeout)
                .user_agent(concat!("agent-chat-gateway/", env!("CARGO_PKG_VERSION")))
                // A burst (many watchers starting at once) opens many connections; keeping
                // them all idle costs ~25 KiB of buffers each for as long as they live.
                .pool_max_idle_per_host(IDLE_CONNECTIONS)
                .build()
                .map_err(|e| e.to_string())
        };
        Ok(RestClient {
            base: base.trim_end_matches('/').to_string(),
            username: username.to_string(),
            password: password.to_string(),
            api: build(timeouts.request)?,
            transfer: build(timeouts.transfer)?,
            session: RwLock::new(None),
            login_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The current session, if logged in.
    pub fn session(&self) -> Option<Session> {
        self.session
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Drops the session (the next call logs in again).
    pub fn forget_session(&self) {
        *self.session.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    fn api_url(&self, endpoint: &str) -> String {
        format!("{}/api/v1/{endpoint}", self.base)
    }

    /// Logs in with username and password (`POST login`) and keeps the session.
    pub async fn login(&self) -> Result<Session, RestError> {
        let endpoint = "login";
        let response = self
            .api
            .post(self.api_url(endpoint))
            .json(&json!({"user": self.username, "password": self.password}))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = read_json(endpoint, response).await;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let message = body
                .ok()
                .and_then(|b| b.get("message").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
            return Err(RestError::LoginRefused(message));
        }
        if !status.is_success() {
            return Err(RestError::Status {
                endpoint: endpoint.into(),
                status: status.as_u16(),
                body: body.map(|b| b.to_string()).unwrap_or_default(),
            });
        }
        let body = body?;
        if body.get("status").and_then(Value::as_str) != Some("success") {
            return Err(RestError::LoginRefused(snippet(&body.to_string())));
        }
        let data = body.get("data");
        let field = |name: &str| {
            data.and_then(|d| d.get(name))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let (Some(token), Some(user_id)) = (field("authToken"), field("userId")) else {
            return Err(RestError::Decode {
                endpoint: endpoint.into(),
                detail: "no data.authToken/data.userId".into(),
            });
        };
        let session = Session { token, user_id };
        *self.session.write().unwrap_or_else(|p| p.into_inner()) = Some(session.clone());
        info!(user = %self.username, "logged in to Rocket.Chat (REST)");
        Ok(session)
    }

    /// The current session, logging in first when there is none.
    pub async fn ensure_session(&self) -> Result<Session, RestError> {
        if let Some(session) = self.session() {
            return Ok(session);
        }
        let _guard = self.login_lock.lock().await;
        if let Some(session) = self.session() {
            return Ok(session);
        }
        self.login().await
    }

    /// Logs in again after `rejected` was refused, unless another call already did.
    async fn relogin_after(&self, rejected: &Session) -> Result<Session, RestError> {
        let _guard = self.login_lock.lock().await;
        if let Some(current) = self.session() {
            if current.token != rejected.token {
                return Ok(current);
            }
        }
        debug!("REST token refused (401); logging in again");
        self.login().await
    }

    /// Sends an authenticated request built by `build`; on 401 logs in again once and
    /// resends. Returns the raw response whatever its status.
    pub async fn send_authed<F>(&self, build: F) -> Result<Response, RestError>
    where
        F: Fn(&Session) -> RequestBuilder,
    {
        let session = self.ensure_session().await?;
        let response = build(&session).send().await.map_err(transport)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let fresh = self.relogin_after(&session).await?;
        build(&fresh).send().await.map_err(transport)
    }

    /// An authenticated request builder on the API client.
    fn authed(&self, method: Method, url: &str, session: &Session) -> RequestBuilder {
        with_auth(self.api.request(method, url), session)
    }

    /// An authenticated JSON call: HTTP errors and `success: false` become errors.
    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, RestError> {
        let url = self.api_url(endpoint);
        let response = self
            .send_authed(|s| {
                let mut req = self.authed(method.clone(), &url, s).query(query);
                if let Some(body) = body {
                    req = req.json(body);
                }
                req
            })
            .await?;
        checked_json(endpoint, response).await
    }

    /// The server's major version from `GET /api/info` (`None` when unknown).
    pub async fn server_major_version(&self) -> Option<u32> {
        let url = format!("{}/api/info", self.base);
        let response = self
            .send_authed(|s| self.authed(Method::GET, &url, s))
            .await
            .ok()?;
        let body = checked_json("info", response).await.ok()?;
        let version = body
            .get("version")
            .or_else(|| body.get("info").and_then(|i| i.get("version")))
            .and_then(Value::as_str)?;
        parse_major_version(version)
    }

    /// The server's `Message_MaxAllowedSize` setting (`None` when unavailable).
    pub async fn message_size_limit(&self) -> Option<usize> {
        let body = self
            .call(
                Method::GET,
                "settings.public",
                &[("_id", "Message_MaxAllowedSize".to_string())],
                None,
            )
            .await
            .ok()?;
        body.get("settings")?
            .as_array()?
            .iter()
            .find(|s| s.get("_id").and_then(Value::as_str) == Some("Message_MaxAllowedSize"))?
            .get("value")?
            .as_u64()
            .filter(|v| *v > 0)
            .and_then(|v| usize::try_from(v).ok())
    }

    /// Posts a text (`chat.postMessage`): `channel` for the room itself, `roomId` + `tmid`
    /// in a thread.
    pub async fn post_message(
        &self,
        room_id: &str,
        text: &str,
        thread_id: Option<&str>,
    ) -> Result<Value, RestError> {
        let body = match thread_id {
            Some(tmid) => json!({"roomId": room_id, "text": text, "tmid": tmid}),
            None => json!({"channel": room_id, "text": text}),
        };
        self.call(Method::POST, "chat.postMessage", &[], Some(&body))
            .await
    }

    /// Uploads a file with an optional caption, in a thread or the room: `rooms.media` +
    /// `rooms.mediaConfirm` on Rocket.Chat 8 or later, `rooms.upload` before. With an unknown
    /// version `rooms.upload` is tried first and a 404 falls over to `rooms.media`.
    pub async fn upload(
        &self,
        room_id: &str,
        path: &Path,
        caption: &str,
        thread_id: Option<&str>,
        major_version: Option<u32>,
    ) -> Result<(), RestError> {
        let data = tokio::fs::read(path).await.map_err(|e| RestError::File {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let mime = mime_guess::from_path(path)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_string();
        let file = UploadFile { name, mime, data };
        match major_version {
            Some(v) if v >= 8 => self.upload_media(room_id, &file, caption, thread_id).await,
            Some(_) => self.upload_legacy(room_id, &file, caption, thread_id).await,
            None => match self.upload_legacy(room_id, &file, caption, thread_id).await {
                Err(e) if e.status() == Some(404) => {
                    debug!("rooms.upload is gone (Rocket.Chat 8+); using rooms.media");
                    self.upload_media(room_id, &file, caption, thread_id).await
                }
                other => other,
            },
        }
    }

    async fn upload_legacy(
        &self,
        room_id: &str,
        file: &UploadFile,
        caption: &str,
        thread_id: Option<&str>,
    ) -> Result<(), RestError> {
        let endpoint = format!("rooms.upload/{room_id}");
        let url = self.api_url(&endpoint);
        let response = self
            .send_authed(|s| {
                let mut form = reqwest::multipart::Form::new().part("file", file.part());
                if !caption.is_empty() {
                    form = form.text("msg", caption.to_string());
                }
                if let Some(tmid) = thread_id {
                    form = form.text("tmid", tmid.to_string());
                }
                with_auth(self.transfer.post(&url), s).multipart(form)
            })
            .await?;
        checked_json(&endpoint, response).await.map(|_| ())
    }

    async fn upload_media(
        &self,
        room_id: &str,
        file: &UploadFile,
        caption: &str,
        thread_id: Option<&str>,
    ) -> Result<(), RestError> {
        let endpoint = format!("rooms.media/{room_id}");
        let url = self.api_url(&endpoint);
        let response = self
            .send_authed(|s| {
                let form = reqwest::multipart::Form::new().part("file", file.part());
                with_auth(self.transfer.post(&url), s).multipart(form)
            })
            .await?;
        let body = checked_json(&endpoint, response).await?;
        let file_id = body
            .get("file")
            .and_then(|f| f.get("_id"))
            .and_then(Value::as_str)
            .ok_or_else(|| RestError::Decode {
                endpoint: endpoint.clone(),
                detail: "no file._id".into(),
            })?;
        let mut confirm = serde_json::Map::new();
        if !caption.is_empty() {
            confirm.insert("msg".into(), json!(caption));
        }
        if let Some(tmid) = thread_id {
            confirm.insert("tmid".into(), json!(tmid));
        }
        self.call(
            Method::POST,
            &format!("rooms.mediaConfirm/{room_id}/{file_id}"),
            &[],
            Some(&Value::Object(confirm)),
        )
        .await
        .map(|_| ())
    }

    /// Opens (or creates) the direct-message room with `username` (`im.create`); its id.
    pub async fn open_direct(&self, username: &str) -> Result<String, RestError> {
        let endpoint = "im.create";
        let body = self
            .call(
                Method::POST,
                endpoint,
                &[],
                Some(&json!({"username": username})),
            )
            .await?;
        body.get("room")
            .and_then(|r| r.get("_id").or_else(|| r.get("rid")))
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| RestError::Decode {
                endpoint: endpoint.into(),
                detail: "no room._id".into(),
            })
    }

    /// Looks a room up by name: `channels.info`, then `groups.info`. `None` when neither
    /// knows it (HTTP 400/404 or `success: false`).
    pub async fn room_by_name(&self, name: &str) -> Result<Option<RoomInfo>, RestError> {
        self.channel_or_group("roomName", name).await
    }

    /// Looks a room up by id: `channels.info`, `groups.info`, then `rooms.info` (which also
    /// knows direct-message rooms). `None` when the server does not know it.
    pub async fn room_by_id(&self, room_id: &str) -> Result<Option<RoomInfo>, RestError> {
        if let Some(info) = self.channel_or_group("roomId", room_id).await? {
            return Ok(Some(info));
        }
        match self
            .call(
                Method::GET,
                "rooms.info",
                &[("roomId", room_id.to_string())],
                None,
            )
            .await
        {
            Ok(body) => Ok(body.get("room").and_then(|r| room_info(r, None))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn channel_or_group(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Option<RoomInfo>, RestError> {
        for (endpoint, field, kind) in [
            ("channels.info", "channel", RoomKind::Channel),
            ("groups.info", "group", RoomKind::Group),
        ] {
            let result = self
                .call(Method::GET, endpoint, &[(key, value.to_string())], None)
                .await;
            match result {
                Ok(body) => {
                    if let Some(info) = body.get(field).and_then(|r| room_info(r, Some(kind))) {
                        return Ok(Some(info));
                    }
                }
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// One page of a room's history, newest first as the server returns it.
    /// `oldest`/`latest` are ISO 8601 times; `inclusive` applies to both.
    pub async fn history_page(
        &self,
        kind: RoomKind,
        room_id: &str,
        count: u32,
        oldest: Option<&str>,
        latest: Option<&str>,
        inclusive: bool,
    ) -> Result<Vec<Value>, RestError> {
        let endpoint = match kind {
            RoomKind::Group => "groups.history",
            RoomKind::Dm => "im.history",
            RoomKind::Channel | RoomKind::Script => "channels.history",
        };
        let mut query = vec![
            ("roomId", room_id.to_string()),
            ("count", count.to_string()),
            ("unreads", "false".to_string()),
            // Thread replies are messages to answer too (the server hides them by default).
            ("showThreadMessages", "true".to_string()),
        ];
        if let Some(oldest) = oldest {
            query.push(("oldest", oldest.to_string()));
        }
        if let Some(latest) = latest {
            query.push(("latest", latest.to_string()));
        }
        if inclusive {
            query.push(("inclusive", "true".to_string()));
        }
        let body = self.call(Method::GET, endpoint, &query, None).await?;
        body.get("messages")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| RestError::Decode {
                endpoint: endpoint.into(),
                detail: "no messages[]".into(),
            })
    }

    /// Opens a download of `url` (a URL on this server) with the bot's credentials.
    pub async fn download(&self, url: &str) -> Result<Response, RestError> {
        let response = self
            .send_authed(|s| with_auth(self.transfer.get(url), s))
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(RestError::Status {
                endpoint: "download".into(),
                status: status.as_u16(),
                body: String::new(),
            });
        }
        Ok(response)
    }
}

/// A file read for upload.
struct UploadFile {
    name: String,
    mime: String,
    data: Vec<u8>,
}

impl UploadFile {
    fn part(&self) -> reqwest::multipart::Part {
        let part = reqwest::multipart::Part::bytes(self.data.clone()).file_name(self.name.clone());
        match part.mime_str(&self.mime) {
            Ok(part) => part,
            Err(_) => {
                reqwest::multipart::Part::bytes(self.data.clone()).file_name(self.name.clone())
            }
        }
    }
}

fn with_auth(req: RequestBuilder, session: &Session) -> RequestBuilder {
    req.header("X-Auth-Token", &session.token)
        .header("X-User-Id", &session.user_id)
}

fn transport(e: reqwest::Error) -> RestError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    RestError::Transport(text)
}

fn snippet(text: &str) -> String {
    if text.len() <= BODY_SNIPPET {
        return text.to_string();
    }
    let mut end = BODY_SNIPPET;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

async fn read_json(endpoint: &str, response: Response) -> Result<Value, RestError> {
    let text = response.text().await.map_err(transport)?;
    serde_json::from_str(&text).map_err(|_| RestError::Decode {
        endpoint: endpoint.to_string(),
        detail: format!("not JSON: {}", snippet(&text)),
    })
}

/// The JSON body of a response; HTTP errors and `success: false` become errors.
async fn checked_json(endpoint: &str, response: Response) -> Result<Value, RestError> {
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(RestError::Status {
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
            body: snippet(&body),
        });
    }
    let body = read_json(endpoint, response).await?;
    if body.get("success") == Some(&Value::Bool(false)) {
        let message = body
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| snippet(&body.to_string()));
        return Err(RestError::Api {
            endpoint: endpoint.to_string(),
            message,
        });
    }
    Ok(body)
}

fn is_not_found(e: &RestError) -> bool {
    matches!(e.status(), Some(400 | 404)) || matches!(e, RestError::Api { .. })
}

/// Reads an `IRoom` object; `kind` overrides its `t`.
fn room_info(room: &Value, kind: Option<RoomKind>) -> Option<RoomInfo> {
    let id = room.get("_id").and_then(Value::as_str)?.to_string();
    let kind = kind.or_else(|| match room.get("t").and_then(Value::as_str) {
        Some("c") => Some(RoomKind::Channel),
        Some("p") => Some(RoomKind::Group),
        Some("d") => Some(RoomKind::Dm),
        _ => None,
    })?;
    let name = ["name", "fname"]
        .iter()
        .filter_map(|k| room.get(*k).and_then(Value::as_str))
        .find(|s| !s.is_empty())
        .unwrap_or(&id)
        .to_string();
    Some(RoomInfo { id, name, kind })
}

/// The major number of a version string (`"8.5.2"` → 8).
pub fn parse_major_version(version: &str) -> Option<u32> {
    version.trim().split('.').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn major_versions() {
        assert_eq!(parse_major_version("8.5.2"), Some(8));
        assert_eq!(parse_major_version("7.10"), Some(7));
        assert_eq!(parse_major_version("12"), Some(12));
        assert_eq!(parse_major_version("x.1"), None);
        assert_eq!(parse_major_version(""), None);
    }

    #[test]
    fn room_objects() {
        assert_eq!(
            room_info(&json!({"_id": "R", "t": "p", "name": "ops"}), None),
            Some(RoomInfo {
                id: "R".into(),
                name: "ops".into(),
                kind: RoomKind::Group
            })
        );
        assert_eq!(
            room_info(&json!({"_id": "R", "t": "d"}), None).map(|r| (r.name, r.kind)),
            Some(("R".into(), RoomKind::Dm))
        );
        assert_eq!(room_info(&json!({"_id": "R", "t": "l"}), None), None);
        assert_eq!(
            room_info(
                &json!({"_id": "R", "t": "l", "fname": "Live"}),
                Some(RoomKind::Channel)
            )
            .map(|r| r.name),
            Some("Live".into())
        );
        assert_eq!(room_info(&json!({"t": "c"}), None), None);
    }

    #[test]
    fn transient_errors() {
        assert!(RestError::Transport("x".into()).is_transient());
        for (status, transient) in [
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (404, false),
        ] {
            let e = RestError::Status {
                endpoint: "e".into(),
                status,
                body: String::new(),
            };
            assert_eq!(e.is_transient(), transient, "{status}");
        }
        assert!(!RestError::LoginRefused("x".into()).is_transient());
    }
}
