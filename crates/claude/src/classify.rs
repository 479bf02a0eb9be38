//! Turning a finished CLI run into success or an [`AgentError`] class (digest §4.3, adapted to
//! what CLI 2.1.330 really prints).
//!
//! Checked against the real CLI with retries off: a failed model request ends the run with
//! exit code 1 and a `result` whose `is_error` is true, `api_error_status` holds the HTTP status
//! and `result` reads e.g. `API Error: Request rejected (429) · …`; nothing goes to stderr. A
//! model service that cannot be reached gives `terminal_reason: "api_error"` with no status
//! (`API Error: Connection refused …`). An unknown session gives exit code 1, subtype
//! `error_during_execution`, `errors: ["No conversation found with session ID: <id>"]` and
//! the same line on stderr.
//!
//! Order of the rules: the HTTP status of a failed model request decides first (429 → rate
//! limited, 401/403 → permission, 5xx/529 → unavailable); then an unknown session; then, for a
//! non-zero exit only, words in the diagnostics (the reference's substring rules plus connection
//! failures). A zero exit is a success even when the result is flagged as an error: that text is
//! delivered with `is_error` set.

use std::process::ExitStatus;

use acg_core::AgentError;

use crate::stream::ParsedRun;

/// At most this many characters of diagnostics go into an error message.
const DIAG_CHARS: usize = 500;

const SESSION_NOT_FOUND: &[&str] = &[
    "no conversation found with session id",
    "--resume requires a valid session id",
];
const RATE_LIMITED: &[&str] = &[
    "usage limit",
    "rate limit",
    "rate_limit",
    "quota exceeded",
    "quota reached",
    "too many requests",
];
const PERMISSION: &[&str] = &[
    "permission denied",
    "not permitted",
    "approval required",
    "blocked as safe default",
    "failed to authenticate",
    "authentication_error",
    "permission_error",
];
const UNAVAILABLE: &[&str] = &[
    "temporarily unavailable",
    "service unavailable",
    "backend unavailable",
    "overloaded",
    "connection refused",
    "econnrefused",
    "unable to connect",
];
const PROTOCOL: &[&str] = &["malformed", "parse"];

/// How the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(signal)) => Exit::Signal(signal),
            (None, None) => Exit::Code(-1),
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "code {code}"),
            Exit::Signal(signal) => write!(f, "signal {signal}"),
        }
    }
}

/// Decides whether a run failed, and how. `session_id` names the resumed session, if any.
pub fn classify(
    exit: Exit,
    run: &ParsedRun,
    stderr: &str,
    session_id: Option<&str>,
) -> Result<(), AgentError> {
    let result = run.result.as_ref();
    let result_text = result.and_then(|r| r.result.as_deref()).unwrap_or("");

    // 1. A failed model request, by its HTTP status.
    let status = result.and_then(|r| r.api_error_status).or_else(|| {
        (exit != Exit::Code(0) || result.is_some_and(|r| r.is_error))
            .then(|| status_in_text(result_text))
            .flatten()
    });
    if let Some(status) = status {
        if let Some(error) = error_for_status(status, short(result_text)) {
            return Err(error);
        }
    }

    // 2. An unknown session.
    let errors = result.map(|r| r.errors.join("\n")).unwrap_or_default();
    let everything = format!("{errors}\n{stderr}\n{result_text}").to_lowercase();
    if SESSION_NOT_FOUND.iter().any(|w| everything.contains(w)) {
        return Err(AgentError::SessionNotFound(
            session_id.unwrap_or_default().to_owned(),
        ));
    }

    if exit == Exit::Code(0) {
        if result.is_none() && run.text_parts.is_empty() {
            return Err(AgentError::Protocol(format!(
                "the agent exited without a result ({} stdout lines were not JSON)",
                run.non_json_lines
            )));
        }
        return Ok(());
    }

    // 3. A non-zero exit, by the words in its diagnostics.
    let diagnostics = diagnostics(run, stderr);
    let subtype = result.map(|r| r.subtype.as_str()).unwrap_or("");
    let haystack = format!("{subtype}\n{diagnostics}").to_lowercase();
    let message = if subtype.is_empty() {
        format!("agent exited with {exit}: {}", short(&diagnostics))
    } else {
        format!(
            "agent exited with {exit} ({subtype}): {}",
            short(&diagnostics)
        )
    };
    let api_error = result.and_then(|r| r.terminal_reason.as_deref()) == Some("api_error");
    Err(if RATE_LIMITED.iter().any(|w| haystack.contains(w)) {
        AgentError::RateLimited(message)
    } else if PERMISSION.iter().any(|w| haystack.contains(w)) {
        AgentError::Permission(message)
    } else if api_error || UNAVAILABLE.iter().any(|w| haystack.contains(w)) {
        AgentError::Unavailable(message)
    } else if PROTOCOL.iter().any(|w| haystack.contains(w)) {
        AgentError::Protocol(message)
    } else {
        AgentError::Other(message)
    })
}

/// The error class of a failed model request's HTTP status; `None` for statuses that are
/// not errors or not specific (those fall through to the other rules).
pub fn error_for_status(status: u16, detail: String) -> Option<AgentError> {
    let message = format!("model API returned {status}: {detail}");
    match status {
        429 => Some(AgentError::RateLimited(message)),
        401 | 403 => Some(AgentError::Permission(message)),
        500..=599 => Some(AgentError::Unavailable(message)),
        400..=499 => Some(AgentError::Other(message)),
        _ => None,
    }
}

/// Stderr, else the result's `errors`, else its text, else the last stdout lines.
fn diagnostics(run: &ParsedRun, stderr: &str) -> String {
    let result = run.result.as_ref();
    let candidates = [
        stderr.trim().to_owned(),
        result.map(|r| r.errors.join("\n")).unwrap_or_default(),
        result
            .and_then(|r| r.result.clone())
            .unwrap_or_default()
            .trim()
            .to_owned(),
        run.last_lines.join("\n"),
    ];
    candidates
        .into_iter()
        .find(|c| !c.trim().is_empty())
        .unwrap_or_else(|| "no output".to_owned())
}

/// A status named in an `API Error: …` text (`API Error: 529 …`, `Request rejected (429)`).
fn status_in_text(text: &str) -> Option<u16> {
    let lower = text.to_lowercase();
    let start = lower.find("api error")?;
    let tail = &text[start..];
    let bytes = tail.as_bytes();
    (0..bytes.len().saturating_sub(2)).find_map(|i| {
        let three = &bytes[i..i + 3];
        let bounded_left = i == 0 || !bytes[i - 1].is_ascii_digit();
        let bounded_right = bytes.get(i + 3).is_none_or(|b| !b.is_ascii_digit());
        if bounded_left && bounded_right && three.iter().all(u8::is_ascii_digit) {
            let n: u16 = std::str::from_utf8(three).ok()?.parse().ok()?;
            (400..=599).contains(&n).then_some(n)
        } else {
            None
        }
    })
}

fn short(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(DIAG_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::RunResult;

    fn run_with(result: RunResult) -> ParsedRun {
        ParsedRun {
            result: Some(result),
            ..Default::default()
        }
    }

    fn api_error(status: Option<u16>, text: &str) -> ParsedRun {
        run_with(RunResult {
            subtype: "success".into(),
            is_error: true,
            result: Some(text.into()),
            api_error_status: status,
            terminal_reason: Some("api_error".into()),
            ..Default::default()
        })
    }

    #[test]
    fn api_status_decides_first() {
        let cases = [
            (
                429,
                "API Error: Request rejected (429) · slow down",
                "RateLimited",
            ),
            (
                401,
                "Failed to authenticate. API Error: 401 bad key",
                "Permission",
            ),
            (
                403,
                "Failed to authenticate. API Error: 403 nope",
                "Permission",
            ),
            (
                529,
                "API Error: 529 overloaded. This is a server-side issue",
                "Unavailable",
            ),
            (503, "API Error: 503 down", "Unavailable"),
            (500, "API Error: 500 oops", "Unavailable"),
            (400, "API Error: 400 bad request", "Other"),
        ];
        for (status, text, want) in cases {
            let err = classify(Exit::Code(1), &api_error(Some(status), text), "", None)
                .expect_err("must fail");
            assert!(format!("{err:?}").starts_with(want), "{status}: {err:?}");
            // The status is also found in the text when the field is missing.
            let err =
                classify(Exit::Code(1), &api_error(None, text), "", None).expect_err("must fail");
            assert!(
                format!("{err:?}").starts_with(want),
                "{status} from text: {err:?}"
            );
        }
    }

    #[test]
    fn unreachable_model_is_unavailable() {
        let run = api_error(
            None,
            "API Error: Connection refused — a firewall or proxy may be blocking it (ECONNREFUSED)",
        );
        assert!(matches!(
            classify(Exit::Code(1), &run, "", None),
            Err(AgentError::Unavailable(_))
        ));
    }

    #[test]
    fn unknown_session() {
        let run = run_with(RunResult {
            subtype: "error_during_execution".into(),
            is_error: true,
            errors: vec!["No conversation found with session ID: abc".into()],
            ..Default::default()
        });
        assert_eq!(
            classify(
                Exit::Code(1),
                &run,
                "No conversation found with session ID: abc\n",
                Some("abc")
            ),
            Err(AgentError::SessionNotFound("abc".into()))
        );
        // Only stderr says it (no result line).
        assert_eq!(
            classify(
                Exit::Code(1),
                &ParsedRun::default(),
                "No conversation found with session ID: x",
                Some("x")
            ),
            Err(AgentError::SessionNotFound("x".into()))
        );
    }

    #[test]
    fn words_of_a_nonzero_exit() {
        let cases = [
            ("Claude AI usage limit reached|1700000000", "RateLimited"),
            ("Error: 429 Too Many Requests", "RateLimited"),
            ("Permission denied (os error 13)", "Permission"),
            ("the backend is temporarily unavailable", "Unavailable"),
            ("could not parse settings", "Protocol"),
            ("error: unknown option '--bogus'", "Other"),
        ];
        for (stderr, want) in cases {
            let err = classify(Exit::Code(1), &ParsedRun::default(), stderr, None).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{stderr}: {err:?}");
        }
        let err = classify(Exit::Signal(9), &ParsedRun::default(), "", None).unwrap_err();
        assert_eq!(
            err,
            AgentError::Other("agent exited with signal 9: no output".into())
        );
    }

    #[test]
    fn diagnostics_fall_back_to_result_and_stdout() {
        let run = run_with(RunResult {
            subtype: "error_max_turns".into(),
            result: Some("rate limit hit".into()),
            ..Default::default()
        });
        let err = classify(Exit::Code(2), &run, "  ", None).unwrap_err();
        assert_eq!(
            err,
            AgentError::RateLimited(
                "agent exited with code 2 (error_max_turns): rate limit hit".into()
            )
        );
        let run = ParsedRun {
            last_lines: vec!["garbage".into(), "malformed thing".into()],
            ..Default::default()
        };
        assert!(matches!(
            classify(Exit::Code(3), &run, "", None),
            Err(AgentError::Protocol(_))
        ));
    }

    #[test]
    fn zero_exit_is_success_even_with_error_flag() {
        let run = run_with(RunResult {
            subtype: "error_max_turns".into(),
            is_error: true,
            result: Some("stopped early".into()),
            ..Default::default()
        });
        assert_eq!(classify(Exit::Code(0), &run, "", None), Ok(()));
        // But nothing at all is a protocol error.
        assert!(matches!(
            classify(Exit::Code(0), &ParsedRun::default(), "", None),
            Err(AgentError::Protocol(_))
        ));
    }

    #[test]
    fn status_parsing() {
        assert_eq!(
            status_in_text("API Error: Request rejected (429) · x"),
            Some(429)
        );
        assert_eq!(status_in_text("API Error: 5290 nope 503"), Some(503));
        assert_eq!(status_in_text("no api words 429"), None);
        assert_eq!(status_in_text("API Error: 200 fine"), None);
    }
}
