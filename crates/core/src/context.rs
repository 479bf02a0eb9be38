//! The durable session context (digest §3.5): a session-identity header, the built-in
//! platform and tool documents, then the connector's, agent's and watcher's context files,
//! with size limits. Written to `<runtime>/system-prompts/<watcher>.md` and appended to the
//! agent's system prompt on every turn.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::state::replace_file;

/// Inputs of one watcher's durable context.
#[derive(Debug, Clone, Default)]
pub struct ContextSources {
    /// The watcher's name.
    pub watcher_name: String,
    /// The room as configured.
    pub room: String,
    /// The connector's name.
    pub connector_name: String,
    /// The bot's username (adds the addressing section).
    pub bot_username: Option<String>,
    /// Built-in documents (layer 0), already chosen by the caller. Borrowed when they are the
    /// compiled-in documents, so thousands of watchers share one copy.
    pub builtin: Vec<std::borrow::Cow<'static, str>>,
    /// Context files in layer order: connector, agent, watcher. Absolute paths.
    pub files: Vec<PathBuf>,
}

/// The built context and what was skipped or cut.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltContext {
    /// The text to append to the system prompt.
    pub text: String,
    /// Operator-facing warnings (skipped or truncated files).
    pub warnings: Vec<String>,
}

/// Why a context could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// A configured file does not exist.
    #[error("context_inject_files entry not found for watcher '{watcher}': {path}")]
    Missing {
        /// The watcher.
        watcher: String,
        /// The missing path.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read context file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A context file larger than this (in bytes) is skipped.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// The whole context is cut to this many bytes.
pub const MAX_CONTEXT_BYTES: usize = 512 * 1024;
/// Appended after a context that was cut to [`MAX_CONTEXT_BYTES`].
pub const TRUNCATION_NOTE: &str = "\n\n[... context truncated due to size limit ...]";
/// The topics `agent-chat-gateway instructions <topic>` prints, in the order they are listed.
pub const INSTRUCTION_TOPICS: [&str; 2] = ["scheduling", "fetch-history"];

/// How agents read the `to:` header field. Agents' own prompts rely on this exact wording,
/// so it must not change.
const ADDRESSING_SECTION: &str = "\
## Multi-Agent Addressing
Each message header includes a `to:` field. Use it to decide your response:
- `to: me` — message explicitly addressed to you → respond normally
- `to: @all` — room-wide explicit mention → broader fan-out is intentional; reply only with useful, non-duplicative input, otherwise output ONLY `<end-of-agent-chain>`
- `to: @<agent>` — addressed to another agent → stay silent unless you have something essential to add
- `to: me+@<agent>` / `to: me+@all+@<agent>` — addressed to you and other priority responders; if `@all` is present, broader fan-out is intentional but keep replies concise and non-duplicative
- `to: *` — no explicit agent mention → use judgment; respond only if you have something meaningful to contribute
";

const ROCKETCHAT_CONTEXT: &str = concat!(
    include_str!("../contexts/rocketchat.md"),
    include_str!("../contexts/chat-rules.md")
);
const MATTERMOST_CONTEXT: &str = concat!(
    include_str!("../contexts/mattermost.md"),
    include_str!("../contexts/chat-rules.md")
);
const TOOL_INDEX: &str = include_str!("../contexts/tool-index.md");
const SCHEDULING_MANUAL: &str = include_str!("../contexts/scheduling.md");
const FETCH_HISTORY_MANUAL: &str = include_str!("../contexts/fetch-history.md");

/// The built-in document that explains a platform's header format and rules to the agent.
///
/// `platform_type` is the connector's configured `type`; platforms without a text header
/// (voice, script) have none.
pub fn builtin_platform_context(platform_type: &str) -> Option<&'static str> {
    match platform_type {
        "rocketchat" => Some(ROCKETCHAT_CONTEXT),
        "mattermost" => Some(MATTERMOST_CONTEXT),
        _ => None,
    }
}

/// The built-in tool documents: the lazy index, or the full manuals when not lazy.
pub fn builtin_tool_context(lazy_instruction_loading: bool) -> Vec<&'static str> {
    if lazy_instruction_loading {
        vec![TOOL_INDEX]
    } else {
        vec![SCHEDULING_MANUAL, FETCH_HISTORY_MANUAL]
    }
}

/// The manual `agent-chat-gateway instructions <topic>` prints (see [`INSTRUCTION_TOPICS`]).
pub fn instructions(topic: &str) -> Option<&'static str> {
    match topic {
        "scheduling" => Some(SCHEDULING_MANUAL),
        "fetch-history" => Some(FETCH_HISTORY_MANUAL),
        _ => None,
    }
}

/// The first block of every context: who the agent is in the gateway, and (when the bot has a
/// username) how to read the `to:` field. Ends with a newline.
pub fn session_identity(sources: &ContextSources) -> String {
    let mut header = format!(
        "## ACG Session Identity\n\
         - **Watcher name:** `{}`\n\
         - **Room:** `{}`\n\
         - **Connector:** `{}`\n",
        sources.watcher_name, sources.room, sources.connector_name
    );
    if let Some(bot) = sources.bot_username.as_deref().filter(|b| !b.is_empty()) {
        header.push_str(&format!("- **Your username:** `@{bot}`\n\n"));
        header.push_str(ADDRESSING_SECTION);
    }
    header
}

/// Builds the context text, applying the 256 KiB per-file and 512 KiB total limits.
///
/// Layout: the session identity, then the built-in documents, then each file in order, all
/// joined with a blank line. A missing file is an error (the watcher must not start without
/// the context its operator configured); an oversized one is skipped with a warning.
pub fn build_context(sources: &ContextSources) -> Result<BuiltContext, ContextError> {
    let mut warnings = Vec::new();
    let mut parts = vec![session_identity(sources)];
    parts.extend(sources.builtin.iter().map(|doc| doc.to_string()));
    for path in &sources.files {
        match read_context_file(&sources.watcher_name, path)? {
            Ok(text) => parts.push(text),
            Err(warning) => {
                tracing::warn!(watcher = %sources.watcher_name, "{warning}");
                warnings.push(warning);
            }
        }
    }
    let mut text = parts.join("\n\n");
    if text.len() > MAX_CONTEXT_BYTES {
        let warning = format!(
            "context of watcher '{}' is {} KiB, over the {} KiB limit; it was truncated",
            sources.watcher_name,
            text.len() / 1024,
            MAX_CONTEXT_BYTES / 1024
        );
        tracing::warn!("{warning}");
        warnings.push(warning);
        text.truncate(floor_char_boundary(&text, MAX_CONTEXT_BYTES));
        text.push_str(TRUNCATION_NOTE);
    }
    Ok(BuiltContext { text, warnings })
}

/// The largest index `<= max` that is a char boundary of `s`.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// Reads one context file: `Ok(Ok(text))`, `Ok(Err(warning))` when it is too large, or a
/// hard error. The size is checked before reading and again on what was read, in case the
/// file grew in between; at most one byte past the limit is ever read.
fn read_context_file(watcher: &str, path: &Path) -> Result<Result<String, String>, ContextError> {
    let io_err = |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ContextError::Missing {
                watcher: watcher.to_string(),
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_err(e)),
    };
    let too_large = |size: u64| {
        format!(
            "context file {} is {} KiB, over the {} KiB limit; skipped",
            path.display(),
            size / 1024,
            MAX_FILE_BYTES / 1024
        )
    };
    if meta.len() > MAX_FILE_BYTES {
        return Ok(Err(too_large(meta.len())));
    }
    let file = std::fs::File::open(path).map_err(io_err)?;
    let Some(bytes) = read_capped(file, MAX_FILE_BYTES).map_err(io_err)? else {
        return Ok(Err(format!(
            "context file {} grew past the {} KiB limit while being read; skipped",
            path.display(),
            MAX_FILE_BYTES / 1024
        )));
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        io_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8: {e}"),
        ))
    })?;
    Ok(Ok(text))
}

/// Reads at most `limit + 1` bytes: `None` when there are more than `limit`.
fn read_capped(reader: impl Read, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(limit + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// Writes `<runtime_dir>/system-prompts/<watcher>.md` atomically (mode 0600) and returns its path.
///
/// The directory is created (mode 0700) when missing. A watcher name that is not a plain file
/// name (empty, `.`, `..`, or containing `/`) is refused.
pub fn write_system_prompt(
    runtime_dir: &Path,
    watcher: &str,
    text: &str,
) -> std::io::Result<PathBuf> {
    if watcher.is_empty()
        || watcher == "."
        || watcher == ".."
        || watcher.contains('/')
        || watcher.contains('\0')
    {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("watcher name {watcher:?} cannot be used as a file name"),
        ));
    }
    let dir = runtime_dir.join("system-prompts");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let path = dir.join(format!("{watcher}.md"));
    // Rebuilt at every start, so no fsync: a start with many watchers must not queue two
    // fsyncs per watcher behind the state-file lock.
    replace_file(&path, text.as_bytes(), 0o600)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// `build_system_header` of the reference for watcher `rc-home-general`, room `general`,
    /// connector `rc-home`, bot `bot`, byte for byte.
    const REFERENCE_HEADER: &str = "## ACG Session Identity\n- **Watcher name:** `rc-home-general`\n- **Room:** `general`\n- **Connector:** `rc-home`\n- **Your username:** `@bot`\n\n## Multi-Agent Addressing\nEach message header includes a `to:` field. Use it to decide your response:\n- `to: me` \u{2014} message explicitly addressed to you \u{2192} respond normally\n- `to: @all` \u{2014} room-wide explicit mention \u{2192} broader fan-out is intentional; reply only with useful, non-duplicative input, otherwise output ONLY `<end-of-agent-chain>`\n- `to: @<agent>` \u{2014} addressed to another agent \u{2192} stay silent unless you have something essential to add\n- `to: me+@<agent>` / `to: me+@all+@<agent>` \u{2014} addressed to you and other priority responders; if `@all` is present, broader fan-out is intentional but keep replies concise and non-duplicative\n- `to: *` \u{2014} no explicit agent mention \u{2192} use judgment; respond only if you have something meaningful to contribute\n";
    /// The same without a bot username.
    const REFERENCE_HEADER_NO_BOT: &str = "## ACG Session Identity\n- **Watcher name:** `rc-home-general`\n- **Room:** `general`\n- **Connector:** `rc-home`\n";

    fn sources(bot: Option<&str>) -> ContextSources {
        ContextSources {
            watcher_name: "rc-home-general".into(),
            room: "general".into(),
            connector_name: "rc-home".into(),
            bot_username: bot.map(str::to_string),
            builtin: vec![],
            files: vec![],
        }
    }

    fn file(dir: &tempfile::TempDir, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn identity_header_exact() {
        assert_eq!(session_identity(&sources(Some("bot"))), REFERENCE_HEADER);
        assert_eq!(session_identity(&sources(None)), REFERENCE_HEADER_NO_BOT);
        assert_eq!(
            session_identity(&sources(Some(""))),
            REFERENCE_HEADER_NO_BOT
        );
    }

    #[test]
    fn header_alone_when_nothing_else() {
        let built = build_context(&sources(Some("bot"))).unwrap();
        assert_eq!(built.text, REFERENCE_HEADER);
        assert!(built.warnings.is_empty());
    }

    #[test]
    fn layers_in_order_joined_by_blank_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sources(None);
        s.builtin = vec!["B0".into(), "B1".into()];
        s.files = vec![
            file(&dir, "connector.md", "C"),
            file(&dir, "agent.md", "A\n"),
            file(&dir, "watcher.md", "W"),
        ];
        let built = build_context(&s).unwrap();
        assert_eq!(
            built.text,
            format!("{REFERENCE_HEADER_NO_BOT}\n\nB0\n\nB1\n\nC\n\nA\n\n\nW")
        );
    }

    #[test]
    fn missing_file_is_an_error_with_reference_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sources(None);
        let missing = dir.path().join("nope.md");
        s.files = vec![file(&dir, "ok.md", "x"), missing.clone()];
        let err = build_context(&s).unwrap_err();
        assert!(matches!(&err, ContextError::Missing { path, .. } if *path == missing));
        assert_eq!(
            err.to_string(),
            format!(
                "context_inject_files entry not found for watcher 'rc-home-general': {}",
                missing.display()
            )
        );
    }

    #[test]
    fn unreadable_entries_are_io_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sources(None);
        s.files = vec![dir.path().to_path_buf()];
        assert!(matches!(build_context(&s), Err(ContextError::Io { .. })));
        s.files = vec![file(&dir, "bad.md", b"\xff\xfe")];
        assert!(matches!(build_context(&s), Err(ContextError::Io { .. })));
    }

    #[test]
    fn file_at_limit_kept_over_limit_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sources(None);
        let at = "a".repeat(MAX_FILE_BYTES as usize);
        let over = "b".repeat(MAX_FILE_BYTES as usize + 1);
        s.files = vec![
            file(&dir, "at.md", &at),
            file(&dir, "over.md", &over),
            file(&dir, "after.md", "tail"),
        ];
        let built = build_context(&s).unwrap();
        assert_eq!(
            built.text,
            format!("{REFERENCE_HEADER_NO_BOT}\n\n{at}\n\ntail")
        );
        assert_eq!(built.warnings.len(), 1);
        assert!(
            built.warnings[0].contains("over.md"),
            "{:?}",
            built.warnings
        );
    }

    #[test]
    fn limit_counts_utf8_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sources(None);
        // 87 382 three-byte chars = 262 146 bytes: few chars, too many bytes.
        s.files = vec![file(&dir, "wide.md", "€".repeat(87_382))];
        let built = build_context(&s).unwrap();
        assert_eq!(built.text, REFERENCE_HEADER_NO_BOT);
        assert_eq!(built.warnings.len(), 1);
    }

    #[test]
    fn post_read_check_catches_growth() {
        // A file that passed the stat check but grew before the read: the bytes read decide.
        let grown = std::io::Cursor::new(vec![b'x'; MAX_FILE_BYTES as usize + 10]);
        assert_eq!(read_capped(grown, MAX_FILE_BYTES).unwrap(), None);
        let exact = std::io::Cursor::new(vec![b'x'; 8]);
        assert_eq!(read_capped(exact, 8).unwrap(), Some(vec![b'x'; 8]));
        let dir = tempfile::tempdir().unwrap();
        let small = file(&dir, "s.md", "ok");
        assert_eq!(
            read_context_file("w", &small).unwrap(),
            Ok("ok".to_string())
        );
    }

    #[test]
    fn total_over_limit_is_truncated_on_char_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sources(None);
        // Three files of 200 000 bytes of two-byte chars; the cut lands mid-char unless
        // the boundary is respected.
        let chunk = "é".repeat(100_000);
        s.files = vec![
            file(&dir, "1.md", &chunk),
            file(&dir, "2.md", &chunk),
            file(&dir, "3.md", &chunk),
        ];
        let built = build_context(&s).unwrap();
        assert!(built.text.ends_with(TRUNCATION_NOTE));
        let body = built.text.strip_suffix(TRUNCATION_NOTE).unwrap();
        assert!(body.len() <= MAX_CONTEXT_BYTES);
        assert!(body.len() >= MAX_CONTEXT_BYTES - 3);
        let full = format!("{REFERENCE_HEADER_NO_BOT}\n\n{chunk}\n\n{chunk}\n\n{chunk}");
        assert!(full.starts_with(body));
        assert_eq!(built.warnings.len(), 1);
    }

    #[test]
    fn total_exactly_at_limit_is_kept() {
        let header_len = REFERENCE_HEADER_NO_BOT.len() + 2;
        let mut s = sources(None);
        s.builtin = vec!["z".repeat(MAX_CONTEXT_BYTES - header_len).into()];
        let built = build_context(&s).unwrap();
        assert_eq!(built.text.len(), MAX_CONTEXT_BYTES);
        assert!(!built.text.ends_with(TRUNCATION_NOTE));
        s.builtin = vec!["z".repeat(MAX_CONTEXT_BYTES - header_len + 1).into()];
        let built = build_context(&s).unwrap();
        assert_eq!(built.text.len(), MAX_CONTEXT_BYTES + TRUNCATION_NOTE.len());
    }

    #[test]
    fn floor_boundary() {
        assert_eq!(floor_char_boundary("aé", 2), 1);
        assert_eq!(floor_char_boundary("aé", 3), 3);
        assert_eq!(floor_char_boundary("ab", 10), 2);
    }

    #[test]
    fn system_prompt_written_private_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_system_prompt(dir.path(), "rc-home-general", "one").unwrap();
        assert_eq!(path, dir.path().join("system-prompts/rc-home-general.md"));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o077, 0);
        write_system_prompt(dir.path(), "rc-home-general", "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let entries = std::fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 1);
    }

    #[test]
    fn system_prompt_refuses_path_like_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(
                write_system_prompt(dir.path(), bad, "t").is_err(),
                "{bad:?}"
            );
        }
        assert!(!dir.path().join("x.md").exists());
    }

    #[test]
    fn platform_documents() {
        let rc = builtin_platform_context("rocketchat").unwrap();
        let mm = builtin_platform_context("mattermost").unwrap();
        assert!(rc.contains("[Rocket.Chat #<room> | from: <username> | role: <owner|guest>"));
        assert!(mm.contains("[Mattermost #<channel> | from: <username> | role: <owner|guest>"));
        for doc in [rc, mm] {
            for needle in [
                "`to:`",
                "`me`",
                "`@all`",
                "`@<agent>`",
                "`*`",
                "<end-of-agent-chain>",
                "untrusted",
                "role: guest",
                "agent-chat-gateway send <room> --attach",
                "prompt-injection",
            ] {
                assert!(doc.contains(needle), "{needle}");
            }
        }
        assert_eq!(builtin_platform_context("script"), None);
        assert_eq!(builtin_platform_context("voice"), None);
    }

    #[test]
    fn tool_documents() {
        let lazy = builtin_tool_context(true);
        assert_eq!(lazy.len(), 1);
        for topic in INSTRUCTION_TOPICS {
            assert!(lazy[0].contains(&format!("agent-chat-gateway instructions {topic}")));
        }
        let full = builtin_tool_context(false);
        assert_eq!(
            full,
            vec![
                instructions("scheduling").unwrap(),
                instructions("fetch-history").unwrap()
            ]
        );
        assert!(full[0].contains("agent-chat-gateway schedule create"));
        assert!(full[1].contains("agent-chat-gateway fetch-history --watcher"));
        assert_eq!(instructions("nope"), None);
    }

    #[test]
    fn builtin_documents_are_small() {
        let mut all = vec![
            builtin_platform_context("rocketchat").unwrap(),
            builtin_platform_context("mattermost").unwrap(),
        ];
        all.extend(builtin_tool_context(true));
        all.extend(builtin_tool_context(false));
        for doc in all {
            assert!(doc.len() < 8 * 1024);
            assert!(!doc.trim().is_empty());
        }
    }
}
