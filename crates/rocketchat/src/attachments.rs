//! Files attached to a message: which to download ([`plan_downloads`]), where to put them
//! (a per-room cache directory; names that cannot escape it) and the notes the agent gets
//! when a file is too large or cannot be fetched.
//!
//! Downloads run at most [`MAX_PARALLEL_DOWNLOADS`] at a time, each bounded by the configured
//! `download_timeout`, and are written to `<name>.tmp` then renamed, so a half-written file is
//! never handed to an agent. Only links on the Rocket.Chat server itself are fetched (the
//! credentials go with the request; a link to another host is never followed).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::doc::RcMessage;
use crate::rest::RestClient;

/// At most this many files of one message download at the same time.
pub const MAX_PARALLEL_DOWNLOADS: usize = 4;

/// One file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadPlan {
    /// The name shown to users and the agent (as uploaded).
    pub display_name: String,
    /// The size the server reported, in bytes.
    pub size: Option<u64>,
    /// The download path on the server (`/file-upload/<id>/<name>`), or an absolute URL.
    pub link: String,
    /// The local file name: `<id>_<name>`, both made safe ([`safe_component`]).
    pub file_name: String,
}

/// Replaces every character other than letters, digits, `_`, `.` and `-` with `_`, so the
/// result is one plain path component (and never `.`, `..` or empty).
pub fn safe_component(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.chars().all(|c| c == '.') {
        out = out.replace('.', "_");
        if out.is_empty() {
            out.push('_');
        }
    }
    out
}

/// Longest local file name, in bytes (most file systems allow 255; `.tmp` is added while
/// downloading).
const MAX_FILE_NAME: usize = 200;

/// Cuts a file name to [`MAX_FILE_NAME`] bytes on a character boundary.
fn bounded(name: String) -> String {
    if name.len() <= MAX_FILE_NAME {
        return name;
    }
    let mut end = MAX_FILE_NAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// The cache directory of one room: `<cache root>/<connector>/<room id>` (both made safe).
pub fn room_cache_dir(cache_root: &Path, connector: &str, room_id: &str) -> PathBuf {
    cache_root
        .join(safe_component(connector))
        .join(safe_component(room_id))
}

/// The files of a message and where each is downloaded from: the attachment whose link
/// contains the file id, else the one titled with the file name, else the attachment at the
/// same position, else `/file-upload/<id>/<name>`.
pub fn plan_downloads(msg: &RcMessage) -> Vec<DownloadPlan> {
    msg.files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let name = file
                .name
                .clone()
                .unwrap_or_else(|| format!("attachment_{i}"));
            let by_id = file.id.as_deref().and_then(|id| {
                msg.attachments
                    .iter()
                    .filter_map(|a| a.title_link.as_deref())
                    .find(|link| link.contains(id))
            });
            let by_title = || {
                msg.attachments
                    .iter()
                    .find(|a| a.title.as_deref() == Some(name.as_str()))
                    .and_then(|a| a.title_link.as_deref())
            };
            let by_position = || msg.attachments.get(i).and_then(|a| a.title_link.as_deref());
            let link = by_id
                .or_else(by_title)
                .or_else(by_position)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "/file-upload/{}/{}",
                        file.id.as_deref().unwrap_or_default(),
                        name
                    )
                });
            let id_part = file
                .id
                .as_deref()
                .map(safe_component)
                .unwrap_or_else(|| format!("attachment_{i}"));
            DownloadPlan {
                file_name: bounded(format!("{id_part}_{}", safe_component(&name))),
                display_name: name,
                size: file.size,
                link,
            }
        })
        .collect()
}

/// Where uploaded files live on a Rocket.Chat server.
const FILE_UPLOAD_PREFIX: &str = "/file-upload/";

/// The URL to fetch a link from, or `None` when the link must not be fetched.
///
/// The request carries the bot's credentials, and `title_link` is whatever the message's
/// author put there, so only uploads are fetched: paths under `/file-upload/` on the server
/// itself (relative, or absolute with the server's scheme, host and port). The file name part
/// (everything after `/file-upload/<id>/`) is sent as one path segment, so a name like
/// `../../x` can neither be normalized away by the HTTP client nor reach another endpoint.
pub fn download_url(base: &str, link: &str) -> Option<String> {
    let origin = |url: &str| -> Option<String> {
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split(['/', '?', '#']).next()?;
        Some(format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        ))
    };
    let path = if link.starts_with('/') && !link.starts_with("//") {
        link
    } else {
        let link_origin = origin(link)?;
        if link_origin != origin(base)? {
            return None;
        }
        let (_, rest) = link.split_once("://")?;
        &rest[rest.find('/')?..]
    };
    let path = path.split('#').next().unwrap_or_default();
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let rest = path.strip_prefix(FILE_UPLOAD_PREFIX)?;
    let (id, name) = rest.split_once('/').unwrap_or((rest, ""));
    if id.is_empty() || id.chars().all(|c| c == '.') || id.contains(['\\', '%']) {
        return None;
    }
    let name = match name {
        "" => String::new(),
        "." | ".." => name.replace('.', "%2E"),
        other => other.replace('/', "%2F").replace('\\', "%5C"),
    };
    let mut url = format!(
        "{}{FILE_UPLOAD_PREFIX}{id}/{name}",
        base.trim_end_matches('/')
    );
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Some(url)
}

/// `[⚠️ Attachment '<name>' skipped — <x.x> MB exceeds <N> MB limit]`.
pub fn too_large_warning(name: &str, size_bytes: u64, limit_mb: f64) -> String {
    let mb = size_bytes as f64 / (1024.0 * 1024.0);
    format!("[⚠️ Attachment '{name}' skipped — {mb:.1} MB exceeds {limit_mb:.0} MB limit]")
}

/// `[⚠️ Attachment '<name>' failed to download (timed out) — file not available]`.
pub fn timed_out_warning(name: &str) -> String {
    format!("[⚠️ Attachment '{name}' failed to download (timed out) — file not available]")
}

/// `[⚠️ Attachment '<name>' failed to download — file not available]`.
pub fn failed_warning(name: &str) -> String {
    format!("[⚠️ Attachment '{name}' failed to download — file not available]")
}

/// Size limit and time limit of downloads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DownloadLimits {
    /// Largest file, in MB (0 = no limit).
    pub max_file_size_mb: f64,
    /// Per-file time limit.
    pub timeout: Duration,
}

impl DownloadLimits {
    /// The limit in bytes, if any.
    pub fn max_bytes(&self) -> Option<u64> {
        (self.max_file_size_mb > 0.0 && self.max_file_size_mb.is_finite())
            .then_some((self.max_file_size_mb * 1024.0 * 1024.0) as u64)
    }
}

/// What became of one planned file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadOutcome {
    /// Saved at this path.
    Saved(PathBuf),
    /// Not available; the note for the agent.
    Warning(String),
}

/// Why a single download failed (for the log; the agent gets a fixed note).
#[derive(Debug)]
enum FetchError {
    TooLarge(u64),
    Failed(String),
}

/// Fetches the given plans into `dir` (created when needed), at most
/// [`MAX_PARALLEL_DOWNLOADS`] at once; outcomes come back in plan order. `rest` adds the
/// credentials (and logs in again on 401).
pub async fn download_all(
    plans: &[DownloadPlan],
    rest: &RestClient,
    dir: &Path,
    limits: DownloadLimits,
) -> Vec<DownloadOutcome> {
    if plans.is_empty() {
        return Vec::new();
    }
    if let Err(e) = tokio::fs::create_dir_all(dir).await {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot create the attachment cache directory");
        return plans
            .iter()
            .map(|p| DownloadOutcome::Warning(failed_warning(&p.display_name)))
            .collect();
    }
    let slots = tokio::sync::Semaphore::new(MAX_PARALLEL_DOWNLOADS);
    let mut jobs = Vec::with_capacity(plans.len());
    for plan in plans {
        let slots = &slots;
        jobs.push(async move {
            let _slot = slots.acquire().await;
            download_one(plan, rest, dir, limits).await
        });
    }
    futures_util::future::join_all(jobs).await
}

async fn download_one(
    plan: &DownloadPlan,
    rest: &RestClient,
    dir: &Path,
    limits: DownloadLimits,
) -> DownloadOutcome {
    let name = &plan.display_name;
    let max = limits.max_bytes();
    if let (Some(size), Some(max)) = (plan.size, max) {
        if size > max {
            return DownloadOutcome::Warning(too_large_warning(
                name,
                size,
                limits.max_file_size_mb,
            ));
        }
    }
    let Some(url) = download_url(rest.base(), &plan.link) else {
        tracing::warn!(file = %name, link = %plan.link, "attachment link is not on the chat server; not fetched");
        return DownloadOutcome::Warning(failed_warning(name));
    };
    let dest = dir.join(&plan.file_name);
    if dest.parent() != Some(dir) {
        return DownloadOutcome::Warning(failed_warning(name));
    }
    let tmp = dir.join(format!("{}.tmp", plan.file_name));
    let work = async {
        let response = rest
            .download(&url)
            .await
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        if let (Some(len), Some(max)) = (response.content_length(), max) {
            if len > max {
                return Err(FetchError::TooLarge(len));
            }
        }
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        let mut written: u64 = 0;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FetchError::Failed(e.to_string()))?;
            written += chunk.len() as u64;
            if max.is_some_and(|max| written > max) {
                return Err(FetchError::TooLarge(written));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| FetchError::Failed(e.to_string()))?;
        }
        file.flush()
            .await
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        drop(file);
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        Ok(())
    };
    let outcome = match tokio::time::timeout(limits.timeout, work).await {
        Ok(Ok(())) => return DownloadOutcome::Saved(dest),
        Err(_) => {
            tracing::warn!(file = %name, timeout = ?limits.timeout, "attachment download timed out");
            DownloadOutcome::Warning(timed_out_warning(name))
        }
        Ok(Err(FetchError::TooLarge(bytes))) => {
            DownloadOutcome::Warning(too_large_warning(name, bytes, limits.max_file_size_mb))
        }
        Ok(Err(FetchError::Failed(e))) => {
            tracing::warn!(file = %name, error = %e, "attachment download failed");
            DownloadOutcome::Warning(failed_warning(name))
        }
    };
    let _ = tokio::fs::remove_file(&tmp).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{RcAttachment, RcFile};

    fn file(id: Option<&str>, name: Option<&str>) -> RcFile {
        RcFile {
            id: id.map(str::to_string),
            name: name.map(str::to_string),
            size: Some(10),
            mime: None,
        }
    }

    fn attachment(title: Option<&str>, link: Option<&str>) -> RcAttachment {
        RcAttachment {
            title: title.map(str::to_string),
            title_link: link.map(str::to_string),
            description: None,
        }
    }

    #[test]
    fn safe_components_cannot_escape() {
        assert_eq!(safe_component("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(safe_component(".."), "__");
        assert_eq!(safe_component("."), "_");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component("a b/c\\d\0e"), "a_b_c_d_e");
        assert_eq!(safe_component("résumé-1.pdf"), "résumé-1.pdf");
        for raw in ["..", "../x", "/abs", "a/../../b", "x\ny", "....", "~"] {
            let s = safe_component(raw);
            assert!(
                !s.contains('/') && s != "." && s != ".." && !s.is_empty(),
                "{raw} -> {s}"
            );
            let dir = Path::new("/cache/room");
            assert_eq!(dir.join(&s).parent(), Some(dir));
        }
    }

    #[test]
    fn cache_dir_layout() {
        assert_eq!(
            room_cache_dir(Path::new("/c"), "rc home", "GENERAL/../x"),
            PathBuf::from("/c/rc_home/GENERAL_.._x")
        );
    }

    #[test]
    fn links_by_id_title_position_or_default() {
        let msg = RcMessage {
            files: vec![
                file(Some("F1"), Some("a.png")),
                file(Some("F2"), Some("b.txt")),
                file(Some("F3"), Some("c.txt")),
                file(None, None),
            ],
            attachments: vec![
                attachment(Some("b.txt"), Some("/x/by-title")),
                attachment(Some("other"), Some("/file-upload/F1/a.png")),
                attachment(None, Some("/x/positional")),
            ],
            ..Default::default()
        };
        let plans = plan_downloads(&msg);
        assert_eq!(plans[0].link, "/file-upload/F1/a.png");
        assert_eq!(plans[0].file_name, "F1_a.png");
        assert_eq!(plans[1].link, "/x/by-title");
        assert_eq!(plans[2].link, "/x/positional");
        assert_eq!(plans[3].link, "/file-upload//attachment_3");
        assert_eq!(plans[3].file_name, "attachment_3_attachment_3");
        assert_eq!(plans[3].display_name, "attachment_3");
    }

    #[test]
    fn hostile_names_stay_in_the_room_directory() {
        let msg = RcMessage {
            files: vec![
                file(Some("../../x"), Some("../../../etc/passwd")),
                file(Some("F"), Some(&"ü".repeat(300))),
            ],
            ..Default::default()
        };
        for plan in plan_downloads(&msg) {
            let dir = Path::new("/cache/rc/R");
            assert_eq!(dir.join(&plan.file_name).parent(), Some(dir));
            assert!(plan.file_name.len() <= MAX_FILE_NAME);
        }
    }

    #[test]
    fn only_uploads_on_the_server_are_fetched() {
        let base = "http://127.0.0.1:3000";
        assert_eq!(
            download_url(base, "/file-upload/F/a.png").as_deref(),
            Some("http://127.0.0.1:3000/file-upload/F/a.png")
        );
        assert_eq!(
            download_url(
                base,
                "http://127.0.0.1:3000/file-upload/F/a%20b.png?download"
            )
            .as_deref(),
            Some("http://127.0.0.1:3000/file-upload/F/a%20b.png?download")
        );
        assert_eq!(download_url(base, "//evil.example/file-upload/F/x"), None);
        assert_eq!(
            download_url(base, "http://evil.example/file-upload/F/x"),
            None
        );
        assert_eq!(
            download_url(base, "http://127.0.0.1:3001/file-upload/F/x"),
            None
        );
        assert_eq!(download_url(base, "javascript:alert(1)"), None);
        assert_eq!(download_url(base, "relative/x"), None);
        // Other endpoints of the server are never fetched with the bot's credentials.
        assert_eq!(download_url(base, "/api/v1/users.list"), None);
        assert_eq!(download_url(base, "/file-upload/../api/v1/me"), None);
        assert_eq!(download_url(base, "/file-upload/"), None);
    }

    #[test]
    fn hostile_file_names_stay_one_segment() {
        let base = "http://h";
        assert_eq!(
            download_url(base, "/file-upload/F/../../notes.txt").as_deref(),
            Some("http://h/file-upload/F/..%2F..%2Fnotes.txt")
        );
        assert_eq!(
            download_url(base, "/file-upload/F/..").as_deref(),
            Some("http://h/file-upload/F/%2E%2E")
        );
        assert_eq!(
            download_url(base, "/file-upload/F").as_deref(),
            Some("http://h/file-upload/F/")
        );
    }

    #[test]
    fn warning_texts() {
        assert_eq!(
            too_large_warning("a.bin", 12 * 1024 * 1024, 10.0),
            "[⚠️ Attachment 'a.bin' skipped — 12.0 MB exceeds 10 MB limit]"
        );
        assert_eq!(
            too_large_warning("a.bin", 1_600_000, 1.0),
            "[⚠️ Attachment 'a.bin' skipped — 1.5 MB exceeds 1 MB limit]"
        );
        assert_eq!(
            timed_out_warning("a.bin"),
            "[⚠️ Attachment 'a.bin' failed to download (timed out) — file not available]"
        );
        assert_eq!(
            failed_warning("a.bin"),
            "[⚠️ Attachment 'a.bin' failed to download — file not available]"
        );
    }

    #[test]
    fn limits() {
        let l = DownloadLimits {
            max_file_size_mb: 0.0,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(l.max_bytes(), None);
        let l = DownloadLimits {
            max_file_size_mb: 1.5,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(l.max_bytes(), Some(1_572_864));
    }
}
