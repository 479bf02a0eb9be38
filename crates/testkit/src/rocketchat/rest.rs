//! The REST API a bot uses, answered the way Rocket.Chat 7.x/8.x answers: `success: true`
//! merged into every success body, `API.v1.failure` bodies (`{success: false, error,
//! errorType?, details?}`, status 400) for thrown errors, the version-dependent 401/403 bodies,
//! and the request log plus REST fault injection as a middleware around everything but
//! `/websocket`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::ddp;
use super::seed::RoomKind;
use super::server::{lock, RequestRecord, Shared};
use super::wire::{self, encode_uri, js_length, parse_js_date};
use super::world::{
    self, user_info, ApiError, HistoryQuery, LoginError, Secret, ServerVersion, UserRecord,
};

/// The most a request body may carry (uploads); larger bodies are cut off with 413.
const BODY_LIMIT: usize = 256 * 1024 * 1024;

type S = State<Arc<Shared>>;

/// Builds the HTTP routes for one server generation.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let has_upload = shared.world().version.has_rooms_upload();
    let mut r = Router::new()
        .route("/api/info", get(info))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout).get(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/settings.public", get(settings_public))
        .route("/api/v1/chat.postMessage", post(post_message))
        .route("/api/v1/chat.update", post(chat_update))
        .route("/api/v1/channels.info", get(channels_info))
        .route("/api/v1/groups.info", get(groups_info))
        .route("/api/v1/im.create", post(im_create))
        .route("/api/v1/dm.create", post(im_create))
        .route("/api/v1/channels.history", get(channels_history))
        .route("/api/v1/groups.history", get(groups_history))
        .route("/api/v1/im.history", get(im_history))
        .route("/api/v1/dm.history", get(im_history))
        .route("/api/v1/rooms.media/{rid}", post(rooms_media))
        .route(
            "/api/v1/rooms.mediaConfirm/{rid}/{file_id}",
            post(rooms_media_confirm),
        )
        .route("/file-upload/{id}/{name}", get(file_download));
    if has_upload {
        // Removed in 8.0: on an 8.x server this path falls through to the 404 below.
        r = r.route("/api/v1/rooms.upload/{rid}", post(rooms_upload));
    }
    r.route("/websocket", get(websocket))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            faults_and_log,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

// ---- responses -----------------------------------------------------------------------------

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

/// `API.v1.success(body)`: `success: true` merged into the object.
fn success(mut body: Value) -> Response {
    if let Some(obj) = body.as_object_mut() {
        obj.insert("success".to_owned(), Value::Bool(true));
    }
    json_response(StatusCode::OK, &body)
}

const LOGIN_REQUIRED: &str = "You must be logged in to do this.";

/// Renders an error the way the imitated version does.
fn error_response(version: &ServerVersion, e: ApiError) -> Response {
    match e {
        ApiError::Failure {
            error,
            error_type,
            details,
        } => {
            let mut body = json!({ "success": false, "error": error });
            if let Some(t) = error_type {
                body["errorType"] = json!(t);
            }
            if let Some(d) = details {
                body["details"] = d;
            }
            json_response(StatusCode::BAD_REQUEST, &body)
        }
        ApiError::Unauthorized => {
            json_response(StatusCode::UNAUTHORIZED, &unauthorized_body(version))
        }
        ApiError::Forbidden => {
            // Before 8.0 a 403 said "unauthorized" (kept for compatibility), from 8.0 "forbidden".
            let error = if version.breaking() {
                "forbidden"
            } else {
                "unauthorized"
            };
            json_response(
                StatusCode::FORBIDDEN,
                &json!({ "success": false, "error": error }),
            )
        }
        ApiError::NotFound => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "success": false, "error": "Resource not found" }),
        ),
    }
}

/// The 401 body for a missing or invalid login.
fn unauthorized_body(version: &ServerVersion) -> Value {
    let mut body = json!({ "success": false, "error": LOGIN_REQUIRED });
    if !version.breaking() {
        body["status"] = json!("error");
        body["message"] = json!(LOGIN_REQUIRED);
    }
    body
}

fn respond(shared: &Shared, result: Result<Value, ApiError>) -> Response {
    match result {
        Ok(body) => success(body),
        Err(e) => {
            let version = shared.world().version.clone();
            error_response(&version, e)
        }
    }
}

// ---- request helpers -----------------------------------------------------------------------

/// The user the `X-User-Id`/`X-Auth-Token` headers log in, or 401.
fn authed(shared: &Shared, headers: &HeaderMap) -> Result<UserRecord, ApiError> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match (get("x-user-id"), get("x-auth-token")) {
        (Some(uid), Some(token)) => shared
            .world()
            .authenticate(&uid, &token)
            .ok_or(ApiError::Unauthorized),
        _ => Err(ApiError::Unauthorized),
    }
}

/// `this.bodyParams`: JSON or form-encoded; an empty body is `{}`.
fn body_params(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(body);
        return Ok(Value::Object(
            pairs.into_iter().map(|(k, v)| (k, json!(v))).collect(),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::plain(&format!("Unexpected token in JSON: {e}")))
}

fn serde_urlencoded_pairs(body: &Bytes) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `ajv` `additionalProperties: false` on query parameters.
fn check_params(q: &HashMap<String, String>, allowed: &[&str]) -> Result<(), ApiError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(_) => Err(ApiError::meteor(
            "invalid-params",
            Some("must NOT have additional properties"),
        )),
        None => Ok(()),
    }
}

// ---- middleware ----------------------------------------------------------------------------

/// Records every request and applies REST faults (delay first, then injected failures).
async fn faults_and_log(State(shared): S, req: Request, next: Next) -> Response {
    if req.uri().path() == "/websocket" {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let logged_body = if content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("multipart/"))
    {
        json!(format!("<multipart {} bytes>", bytes.len()))
    } else if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)))
    };
    let mut record = RequestRecord {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        user_id: header("x-user-id"),
        auth_token: header("x-auth-token"),
        content_type,
        body: logged_body,
        status: 0,
    };
    let delay = lock(&shared.faults).delay;
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let injected = lock(&shared.faults).take_failure();
    let response = match injected {
        Some(status) => injected_failure(&shared, status),
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    record.status = response.status().as_u16();
    lock(&shared.requests).push(record);
    response
}

fn injected_failure(shared: &Shared, status: u16) -> Response {
    let version = shared.world().version.clone();
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        401 => error_response(&version, ApiError::Unauthorized),
        403 => error_response(&version, ApiError::Forbidden),
        404 => error_response(&version, ApiError::NotFound),
        _ => {
            let reason = code.canonical_reason().unwrap_or("Internal server error");
            let error = if status == 500 {
                "Internal server error"
            } else {
                reason
            };
            json_response(code, &json!({ "success": false, "error": error }))
        }
    }
}

async fn not_found(State(shared): S) -> Response {
    respond(&shared, Err(ApiError::NotFound))
}

async fn websocket(State(shared): S, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| ddp::run(shared, socket))
}

// ---- info, login, me, settings -------------------------------------------------------------

async fn info(State(shared): S) -> Response {
    let version = shared.world().version.trimmed();
    success(json!({
        "version": version,
        "minimumClientVersions": { "desktop": "3.9.6", "mobile": "4.39.0" },
    }))
}

/// `loginCompatibility` + the `login` method: password (plain, `{hashed}`, `{digest,
/// algorithm}`) by `user`/`username`/`email`, or `{resume}`.
async fn login(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let version = shared.world().version.clone();
    let params = match body_params(&headers, &body) {
        Ok(p) => p,
        Err(e) => return error_response(&version, e),
    };
    let who = params["user"]
        .as_str()
        .or_else(|| params["user"]["username"].as_str())
        .or_else(|| params["user"]["email"].as_str())
        .or_else(|| params["username"].as_str())
        .or_else(|| params["email"].as_str());
    let secret = match &params["password"] {
        Value::String(p) => Some(Secret::Plain(p.clone())),
        Value::Object(o) => o
            .get("hashed")
            .or_else(|| o.get("digest"))
            .and_then(Value::as_str)
            .map(|d| Secret::Digest(d.to_owned())),
        _ => None,
    };
    let result = {
        let mut w = shared.world();
        match (params["resume"].as_str(), who, secret) {
            (Some(token), _, _) => w.resume(token),
            (None, Some(who), Some(secret)) => w.login(who, &secret),
            _ => Err(LoginError::UserNotFound),
        }
    };
    match result {
        Ok(ok) => {
            let site = shared.world().settings.site_url.clone();
            success(json!({
                "status": "success",
                "data": {
                    "userId": ok.user.id,
                    "authToken": ok.token,
                    "me": user_info(&ok.user, &site),
                },
            }))
        }
        Err(_) => {
            let mut body = json!({ "success": false, "error": "unauthorized" });
            if !version.breaking() {
                // The pre-8.0 compatibility fields; Meteor's ambiguous login error.
                body = json!({
                    "success": false,
                    "error": 403,
                    "status": "error",
                    "message": "Login failure. Please check your login credentials.",
                });
            }
            json_response(StatusCode::UNAUTHORIZED, &body)
        }
    }
}

async fn logout(State(shared): S, headers: HeaderMap) -> Response {
    let result = authed(&shared, &headers).map(|_| {
        if let Some(token) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
            shared.world().revoke_token(token);
        }
        json!({ "status": "success", "data": { "message": "You've been logged out!" } })
    });
    respond(&shared, result)
}

async fn me(State(shared): S, headers: HeaderMap) -> Response {
    let result = authed(&shared, &headers).map(|user| {
        let site = shared.world().settings.site_url.clone();
        user_info(&user, &site)
    });
    respond(&shared, result)
}

async fn settings_public(State(shared): S, Query(q): Query<HashMap<String, String>>) -> Response {
    let (max, file_max, site) = {
        let w = shared.world();
        (
            w.settings.message_max_allowed_size,
            w.settings.file_upload_max_size,
            w.settings.site_url.clone(),
        )
    };
    let all = vec![
        ("Accounts_AllowAnonymousRead", json!(false)),
        ("FileUpload_Enabled", json!(true)),
        ("FileUpload_MaxFileSize", json!(file_max)),
        ("Message_AllowEditing", json!(true)),
        ("Message_MaxAllowedSize", json!(max)),
        ("Message_Read_Receipt_Enabled", json!(false)),
        ("Site_Name", json!("Rocket.Chat")),
        ("Site_Url", json!(site)),
        ("UI_Use_Real_Name", json!(false)),
        ("UTF8_User_Names_Validation", json!("[0-9a-zA-Z-_.]+")),
    ];
    let wanted: Option<Vec<&str>> = q
        .get("_id")
        .filter(|s| !s.is_empty())
        .map(|s| s.split(',').map(str::trim).collect());
    let matching: Vec<Value> = all
        .into_iter()
        .filter(|(id, _)| wanted.as_ref().is_none_or(|w| w.contains(id)))
        .map(|(id, value)| json!({ "_id": id, "value": value, "enterprise": false, "requiredOnWizard": false }))
        .collect();
    let total = matching.len();
    let (offset, count) = pagination(&q);
    let page: Vec<Value> = matching
        .into_iter()
        .skip(offset)
        .take(count.unwrap_or(usize::MAX))
        .collect();
    success(json!({ "settings": page, "count": page.len(), "offset": offset, "total": total }))
}

/// `getPaginationItems`: `count` defaults to 50 (`API_Default_Count`), is capped at 100
/// (`API_Upper_Count_Limit`), and `0` means everything (`API_Allow_Infinite_Count`).
fn pagination(q: &HashMap<String, String>) -> (usize, Option<usize>) {
    let offset = q
        .get("offset")
        .and_then(|o| js_parse_int(o))
        .unwrap_or(0)
        .max(0) as usize;
    let count = match q.get("count") {
        None => 50,
        Some(c) => js_parse_int(c).unwrap_or(0),
    };
    let count = match count {
        c if c > 100 => Some(100),
        0 => None,
        c if c < 0 => Some(50),
        c => Some(c as usize),
    };
    (offset, count)
}

/// `parseInt(s)`: leading digits (optionally signed) after white space.
fn js_parse_int(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (sign, rest) = match s.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, s.strip_prefix('+').unwrap_or(s)),
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<i64>().ok().map(|n| sign * n)
}

// ---- messages ------------------------------------------------------------------------------

async fn post_message(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let result = (|| {
        let user = authed(&shared, &headers)?;
        let params = body_params(&headers, &body)?;
        let targets: Vec<String> = match params.get("channel").or_else(|| params.get("roomId")) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
            _ => {
                return Err(ApiError::meteor(
                    "invalid-params",
                    Some("must have required property 'roomId'\n must have required property 'channel'\n must match exactly one schema in oneOf"),
                ))
            }
        };
        let mut w = shared.world();
        let max = w.settings.message_max_allowed_size;
        if params["text"].as_str().is_some_and(|t| js_length(t) > max) {
            return Err(ApiError::plain("error-message-size-exceeded"));
        }
        if let Some(atts) = params["attachments"].as_array() {
            if atts
                .iter()
                .any(|a| a["text"].as_str().is_some_and(|t| js_length(t) > max))
            {
                return Err(ApiError::plain("error-message-size-exceeded"));
            }
        }
        let mut first: Option<(String, Value)> = None;
        let mut seen = Vec::new();
        for channel in targets {
            if seen.contains(&channel) {
                continue;
            }
            seen.push(channel.clone());
            let rid = w.resolve_post_target(&user.id, &channel)?;
            let doc = w.post_webhook_message(&user.id, &rid, &params)?;
            first.get_or_insert((channel, doc));
        }
        let (channel, doc) = first.ok_or_else(|| ApiError::plain("unknown-error"))?;
        Ok(json!({
            "ts": wire::now_ms(),
            "channel": channel,
            "message": world::rest_doc(&doc),
        }))
    })();
    respond(&shared, result)
}

async fn chat_update(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let result = (|| {
        let user = authed(&shared, &headers)?;
        let params = body_params(&headers, &body)?;
        let (Some(room_id), Some(msg_id), Some(text)) = (
            params["roomId"].as_str(),
            params["msgId"].as_str(),
            params["text"].as_str(),
        ) else {
            return Err(ApiError::meteor(
                "invalid-params",
                Some("must have required property 'text'"),
            ));
        };
        let doc = shared
            .world()
            .edit_message(&user.id, msg_id, Some(room_id), text)?;
        Ok(json!({ "message": world::rest_doc(&doc) }))
    })();
    respond(&shared, result)
}

// ---- rooms ---------------------------------------------------------------------------------

async fn channels_info(
    State(s): S,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    room_info(&s, &headers, &q, RoomKind::Channel, "channel")
}

async fn groups_info(
    State(s): S,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    room_info(&s, &headers, &q, RoomKind::Group, "group")
}

fn room_info(
    shared: &Shared,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    kind: RoomKind,
    key: &str,
) -> Response {
    let result = authed(shared, headers).and_then(|user| {
        let room = shared.world().info(
            kind,
            &user.id,
            q.get("roomId").map(String::as_str),
            q.get("roomName").map(String::as_str),
        )?;
        Ok(json!({ key: world::rest_doc(&room) }))
    });
    respond(shared, result)
}

async fn im_create(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let result = (|| {
        let user = authed(&shared, &headers)?;
        let params = body_params(&headers, &body)?;
        let username = params["username"]
            .as_str()
            .or_else(|| {
                params["usernames"]
                    .as_str()
                    .and_then(|u| u.split(',').next())
            })
            .ok_or_else(|| {
                ApiError::meteor(
                    "invalid-params",
                    Some("must have required property 'username'"),
                )
            })?
            .trim()
            .to_owned();
        let room = shared.world().im_create(&user.id, &username)?;
        Ok(json!({ "room": world::rest_doc(&room) }))
    })();
    respond(&shared, result)
}

const HISTORY_PARAMS: &[&str] = &[
    "roomId",
    "roomName",
    "latest",
    "oldest",
    "inclusive",
    "unreads",
    "showThreadMessages",
    "count",
    "offset",
    "sort",
];

async fn channels_history(
    State(s): S,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    history(&s, &headers, &q, RoomKind::Channel)
}

async fn groups_history(
    State(s): S,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    history(&s, &headers, &q, RoomKind::Group)
}

async fn im_history(
    State(s): S,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    history(&s, &headers, &q, RoomKind::Direct)
}

fn history(
    shared: &Shared,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
    kind: RoomKind,
) -> Response {
    let result = (|| {
        let user = authed(shared, headers)?;
        check_params(q, HISTORY_PARAMS)?;
        let w = shared.world();
        let rid = match kind {
            RoomKind::Channel | RoomKind::Group => {
                let room = w.info(
                    kind,
                    &user.id,
                    q.get("roomId").map(String::as_str),
                    q.get("roomName").map(String::as_str),
                )?;
                room["_id"].as_str().unwrap_or("").to_owned()
            }
            RoomKind::Direct => {
                let key = q.get("roomId").ok_or_else(|| {
                    ApiError::meteor(
                        "error-room-param-not-provided",
                        Some("Query param \"roomId\" or \"username\" is required"),
                    )
                })?;
                let by_user = w
                    .users()
                    .iter()
                    .find(|u| u.id == *key || u.username == *key)
                    .map(|other| world::dm_id(&[user.id.clone(), other.id.clone()]));
                let rid = by_user.unwrap_or_else(|| key.clone());
                match w.room(&rid) {
                    Some(r) if r.kind == RoomKind::Direct => rid,
                    _ => {
                        return Err(ApiError::meteor(
                            "error-room-not-found",
                            Some("The required \"roomId\" param provided does not match any direct message"),
                        ))
                    }
                }
            }
        };
        let room = w.room(&rid).ok_or(ApiError::Forbidden)?;
        if !w.can_access(&user.id, room) {
            return Err(ApiError::Forbidden);
        }
        // An unparsable date is an Invalid Date, which MongoDB's driver stores as epoch 0.
        let date = |s: &String| parse_js_date(s).unwrap_or(0);
        let (offset, count) = pagination(q);
        let query = HistoryQuery {
            latest: q.get("latest").map(date).unwrap_or_else(|| w.now()),
            oldest: q.get("oldest").map(date),
            inclusive: q.get("inclusive").is_some_and(|v| v == "true"),
            offset,
            count,
            show_thread_messages: q.get("showThreadMessages").is_some_and(|v| v == "true"),
        };
        let messages: Vec<Value> = w
            .history(&rid, &query)
            .iter()
            .map(world::rest_doc)
            .collect();
        let mut body = json!({ "messages": messages });
        if q.get("unreads").is_some_and(|v| v == "true") {
            body["unreadNotLoaded"] = json!(0);
        }
        Ok(body)
    })();
    respond(shared, result)
}

// ---- uploads -------------------------------------------------------------------------------

/// A parsed multipart upload: the `file` part and the other text fields.
struct Upload {
    name: String,
    mime: String,
    bytes: Vec<u8>,
    fields: HashMap<String, String>,
}

async fn read_upload(req: Request) -> Result<Upload, ApiError> {
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|_| ApiError::meteor("invalid-field", None))?;
    let mut file = None;
    let mut fields = HashMap::new();
    while let Ok(Some(field)) = multipart.next_field().await {
        let name = field.name().unwrap_or("").to_owned();
        if name == "file" && file.is_none() {
            let filename = field.file_name().unwrap_or("").to_owned();
            let mime = field
                .content_type()
                .map(str::to_owned)
                .unwrap_or_else(|| "application/octet-stream".to_owned());
            let bytes = field
                .bytes()
                .await
                .map_err(|_| ApiError::meteor("invalid-field", None))?;
            file = Some((filename, mime, bytes.to_vec()));
        } else if let Ok(text) = field.text().await {
            fields.insert(name, text);
        }
    }
    let (name, mime, bytes) = file.ok_or_else(|| ApiError::meteor("invalid-field", None))?;
    Ok(Upload {
        name,
        mime,
        bytes,
        fields,
    })
}

/// Auth, room access and size checks shared by `rooms.upload` and `rooms.media`.
async fn checked_upload(
    shared: &Shared,
    rid: &str,
    req: Request,
) -> Result<(UserRecord, Upload), ApiError> {
    let user = authed(shared, req.headers())?;
    {
        let w = shared.world();
        let room = w.room(rid).ok_or(ApiError::Forbidden)?;
        if !w.can_access(&user.id, room) {
            return Err(ApiError::Forbidden);
        }
    }
    let upload = read_upload(req).await?;
    let max = shared.world().settings.file_upload_max_size;
    if upload.bytes.len() > max {
        return Err(ApiError::meteor(
            "error-file-too-large",
            Some(&format!("File size exceeds allowed size of {max} bytes")),
        ));
    }
    Ok((user, upload))
}

/// `rooms.upload/:rid` (before 8.0): file + `msg`/`description`/`tmid` in one request.
async fn rooms_upload(State(shared): S, Path(rid): Path<String>, req: Request) -> Response {
    let result = async {
        let (user, upload) = checked_upload(&shared, &rid, req).await?;
        let mut w = shared.world();
        if upload
            .fields
            .get("description")
            .is_some_and(|d| !w.check_size(d))
        {
            return Err(ApiError::meteor("error-message-size-exceeded", None));
        }
        let file_id = w.store_upload(&rid, &upload.name, &upload.mime, upload.bytes);
        let doc = w.send_file_message(
            &user.id,
            &rid,
            &file_id,
            upload.fields.get("msg").map(String::as_str),
            upload.fields.get("description").map(String::as_str),
            upload.fields.get("tmid").map(String::as_str),
        )?;
        Ok(json!({ "message": world::rest_doc(&doc) }))
    }
    .await;
    respond(&shared, result)
}

/// `rooms.media/:rid`: stores the file, answers `{file: {_id, url}}`; the message comes with
/// `rooms.mediaConfirm`.
async fn rooms_media(State(shared): S, Path(rid): Path<String>, req: Request) -> Response {
    let result = async {
        let (_user, upload) = checked_upload(&shared, &rid, req).await?;
        let name = upload.name.clone();
        let id = shared
            .world()
            .store_upload(&rid, &upload.name, &upload.mime, upload.bytes);
        Ok(json!({ "file": { "_id": id, "url": format!("/file-upload/{id}/{}", encode_uri(&name)) } }))
    }
    .await;
    respond(&shared, result)
}

/// Keys `sendFileMessage` accepts in the confirm body (besides `description`).
const CONFIRM_KEYS: &[&str] = &[
    "description",
    "avatar",
    "emoji",
    "alias",
    "groupable",
    "msg",
    "tmid",
    "customFields",
    "t",
    "content",
    "fileName",
    "fileContent",
];

async fn rooms_media_confirm(
    State(shared): S,
    Path((rid, file_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = (|| {
        let user = authed(&shared, &headers)?;
        let params = body_params(&headers, &body)?;
        let mut w = shared.world();
        let room = w.room(&rid).ok_or(ApiError::Forbidden)?;
        if !w.can_access(&user.id, room) {
            return Err(ApiError::Forbidden);
        }
        if w.upload(&file_id).is_none() {
            return Err(ApiError::meteor("invalid-file", None));
        }
        if let Some(obj) = params.as_object() {
            if let Some(bad) = obj.keys().find(|k| !CONFIRM_KEYS.contains(&k.as_str())) {
                return Err(ApiError::Failure {
                    error: format!("Match error: Unknown key in field {bad}"),
                    error_type: None,
                    details: None,
                });
            }
        }
        let doc = w.send_file_message(
            &user.id,
            &rid,
            &file_id,
            params["msg"].as_str(),
            params["description"].as_str(),
            params["tmid"].as_str(),
        )?;
        Ok(json!({ "message": world::rest_doc(&doc) }))
    })();
    respond(&shared, result)
}

/// `GET /file-upload/:id/:name`: protected files need the user id + token, as headers,
/// `rc_uid`/`rc_token` cookies or query parameters. 403 without them, 404 for unknown ids.
async fn file_download(
    State(shared): S,
    Path((id, _name)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let cookie = |name: &str| -> Option<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let uid = header("x-user-id")
        .or_else(|| cookie("rc_uid"))
        .or_else(|| q.get("rc_uid").cloned());
    let token = header("x-auth-token")
        .or_else(|| cookie("rc_token"))
        .or_else(|| q.get("rc_token").cloned());
    let w = shared.world();
    let authorised = match (uid, token) {
        (Some(u), Some(t)) => w.authenticate(&u, &t).is_some(),
        _ => false,
    };
    if !authorised {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Some(file) = w.upload(&id).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    drop(w);
    let disposition = if q.contains_key("download") {
        "attachment"
    } else {
        "inline"
    };
    let mut res = Response::new(Body::from(file.bytes.as_ref().clone()));
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&file.mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{disposition}; filename=\"{}\"",
        encode_uri(&file.name)
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(file.bytes.len()));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination_caps_count_at_one_hundred() {
        let q = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(pagination(&q(&[])), (0, Some(50)));
        assert_eq!(pagination(&q(&[("count", "200")])), (0, Some(100)));
        assert_eq!(pagination(&q(&[("count", "0")])), (0, None));
        assert_eq!(
            pagination(&q(&[("count", "7"), ("offset", "3")])),
            (3, Some(7))
        );
    }

    #[test]
    fn unauthorized_bodies_differ_by_version() {
        let v7 = ServerVersion::parse("7.10.0").unwrap();
        let v8 = ServerVersion::parse("8.1.0").unwrap();
        assert_eq!(unauthorized_body(&v7)["status"], "error");
        assert!(unauthorized_body(&v8).get("status").is_none());
    }

    #[test]
    fn form_bodies_are_decoded() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let v = body_params(&h, &Bytes::from_static(b"user=a%40b&password=p+w")).unwrap();
        assert_eq!(v, json!({"user": "a@b", "password": "p w"}));
    }
}
