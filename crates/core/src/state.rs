//! `state.<connector>.json` (digest §8.2), in the reference's shape so existing sessions
//! carry over, plus the one atomic-write helper every state file uses.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One watcher's persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherRecord {
    /// The watcher's name.
    pub watcher_name: String,
    /// The agent session (`""` = none yet).
    pub session_id: String,
    /// The resolved room id.
    pub room_id: String,
    /// `channel`, `group`, `dm` or `script`.
    pub room_type: String,
    /// The durable context was delivered.
    pub context_injected: bool,
    /// Paused by `pause`.
    pub paused: bool,
    /// Epoch-ms string of the last answered (or definitively rejected) message, or `""`.
    pub last_processed_ts: String,
}

/// Why a state file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file exists but is not valid state JSON. It is left untouched.
    #[error("state file {path} is corrupt ({reason}); it was left as is")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The state file of one connector.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// `<runtime_dir>/state.<connector>.json`.
    pub fn for_connector(runtime_dir: &Path, connector: &str) -> Self {
        StateFile {
            path: runtime_dir.join(format!("state.{connector}.json")),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the records: a missing file is empty; legacy `watcher_id` entries are upgraded.
    ///
    /// Entries that have neither `watcher_name` nor `watcher_id` are skipped, unknown keys are
    /// ignored and missing fields take the reference's defaults. Anything that is not state
    /// JSON is [`StateError::Corrupt`]; the file is never touched here, so the caller can
    /// decide whether to keep it aside before the next save.
    pub fn load(&self) -> Result<Vec<WatcherRecord>, StateError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StateError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        parse_state(&bytes).map_err(|reason| StateError::Corrupt {
            path: self.path.clone(),
            reason,
        })
    }

    /// Writes the records atomically (`indent=2` JSON, like the reference).
    ///
    /// The runtime directory is created when missing; the file gets mode 0600 because it
    /// holds session ids.
    pub fn save(&self, records: &[WatcherRecord]) -> Result<(), StateError> {
        let io_err = |source| StateError::Io {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let bytes = render_state(records).map_err(io_err)?;
        atomic_write(&self.path, &bytes, STATE_FILE_MODE).map_err(io_err)
    }
}

/// Permission bits of state files: they hold session ids, so only the owner reads them.
pub const STATE_FILE_MODE: u32 = 0o600;

/// The on-disk shape: `{"watchers": [ ... ]}`, fields in the reference's order.
#[derive(Serialize)]
struct StateDocument<'a> {
    watchers: &'a [WatcherRecord],
}

/// Serializes like Python's `json.dumps(data, indent=2)`: two-space indent, `": "` and `","`
/// separators, every non-ASCII character escaped as `\uXXXX`, no trailing newline.
fn render_state(records: &[WatcherRecord]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonJsonFormatter::new());
    let doc = StateDocument { watchers: records };
    doc.serialize(&mut ser).map_err(std::io::Error::other)?;
    Ok(out)
}

/// A pretty formatter that, like Python's default `ensure_ascii=True`, escapes every
/// character outside printable ASCII.
struct PythonJsonFormatter {
    inner: serde_json::ser::PrettyFormatter<'static>,
}

impl PythonJsonFormatter {
    fn new() -> Self {
        PythonJsonFormatter {
            inner: serde_json::ser::PrettyFormatter::with_indent(b"  "),
        }
    }
}

macro_rules! delegate {
    ($($name:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $name<W: ?Sized + std::io::Write>(&mut self, w: &mut W $(, $arg: $ty)*) -> std::io::Result<()> {
                self.inner.$name(w $(, $arg)*)
            }
        )*
    };
}

impl serde_json::ser::Formatter for PythonJsonFormatter {
    delegate! {
        begin_array();
        end_array();
        begin_array_value(first: bool);
        end_array_value();
        begin_object();
        end_object();
        begin_object_key(first: bool);
        begin_object_value();
        end_object_value();
    }

    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut plain_start = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[plain_start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            plain_start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[plain_start..])
    }
}

/// Parses a state document, returning why it is not one.
fn parse_state(bytes: &[u8]) -> Result<Vec<WatcherRecord>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let Value::Object(doc) = doc else {
        return Err("top level is not a JSON object".into());
    };
    let entries = match doc.get("watchers") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err("\"watchers\" is not a list".into()),
    };
    let mut records = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(format!("watchers[{index}] is not an object"));
        };
        if let Some(record) =
            parse_entry(entry).map_err(|reason| format!("watchers[{index}]: {reason}"))?
        {
            records.push(record);
        }
    }
    Ok(records)
}

/// One entry: current (`watcher_name`), legacy (`watcher_id`, named after `room_name`), or
/// neither (skipped, `Ok(None)`).
fn parse_entry(entry: &Map<String, Value>) -> Result<Option<WatcherRecord>, String> {
    let (watcher_name, legacy) = if entry.contains_key("watcher_name") {
        (required_str(entry, "watcher_name")?, false)
    } else if entry.contains_key("watcher_id") {
        let name = match entry.get("room_name") {
            Some(_) => required_str(entry, "room_name")?,
            None => required_str(entry, "watcher_id")?,
        };
        (name, true)
    } else {
        tracing::warn!("state entry without watcher_name or watcher_id skipped");
        return Ok(None);
    };
    if legacy {
        tracing::info!(watcher = %watcher_name, "upgrading legacy state entry");
    }
    Ok(Some(WatcherRecord {
        watcher_name,
        session_id: optional_str(entry, "session_id", "")?,
        room_id: optional_str(entry, "room_id", "")?,
        room_type: optional_str(entry, "room_type", "channel")?,
        context_injected: optional_bool(entry, "context_injected")?,
        // Legacy entries predate pausing; they always come back running.
        paused: if legacy {
            false
        } else {
            optional_bool(entry, "paused")?
        },
        last_processed_ts: optional_str(entry, "last_processed_ts", "")?,
    }))
}

fn required_str(entry: &Map<String, Value>, key: &str) -> Result<String, String> {
    match entry.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("\"{key}\" is not a string")),
    }
}

fn optional_str(entry: &Map<String, Value>, key: &str, default: &str) -> Result<String, String> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        // An epoch-ms watermark written as a number is still the same watermark.
        Some(Value::Number(n)) if key == "last_processed_ts" => Ok(n.to_string()),
        Some(_) => Err(format!("\"{key}\" is not a string")),
    }
}

fn optional_bool(entry: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match entry.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!("\"{key}\" is not a boolean")),
    }
}

/// Serializes concurrent [`atomic_write`]s in this process: the temp name only carries the
/// pid, so two threads writing the same file at once would otherwise share one temp file.
static WRITE_LOCK: Mutex<()> = Mutex::new(());

/// Writes `bytes` to `path` via a temp file in the same directory: write, fsync, set `mode`,
/// rename over, fsync the directory. Readers see the old or the new content, never a mix.
///
/// The temp file is `<file>.<pid>.tmp` and is removed again if any step fails. This call
/// blocks; async callers run it on a blocking thread.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temp_path(path, &std::process::id().to_string())?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };

    // A poisoned lock only means another writer panicked; the files are still consistent.
    let _guard = WRITE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let result = write_then_rename(&tmp, path, bytes, mode, true);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    std::fs::File::open(&dir)?.sync_all()
}

/// Replaces `path` with `bytes` (mode `mode`) through a temporary file and a rename, without
/// fsync: for derived files that are rebuilt at every start (a watcher's system prompt), where
/// a crash may at worst leave a stale or empty file that the next start rewrites before use.
/// Readers never see a half-written file. Concurrent calls (distinct or equal paths) are safe.
pub fn replace_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    // Unlike `atomic_write` there is no lock: each call has a temp file of its own.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = temp_path(path, &format!("{}.{n}", std::process::id()))?;
    let written = write_then_rename(&tmp, path, bytes, mode, false);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `<file>.<tag>.tmp` beside `path`.
fn temp_path(path: &Path, tag: &str) -> std::io::Result<PathBuf> {
    let file_name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        )
    })?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".{tag}.tmp"));
    Ok(path.with_file_name(tmp_name))
}

/// Writes `tmp` (fsync'd when `durable`), gives it `mode`, and renames it over `path`.
fn write_then_rename(
    tmp: &Path,
    path: &Path,
    bytes: &[u8],
    mode: u32,
    durable: bool,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(tmp)?;
    file.write_all(bytes)?;
    if durable {
        file.sync_all()?;
    }
    // The umask may have narrowed the creation mode, and a stale temp file keeps its old one.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    drop(file);
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Written by the reference's `save_state` (0.5.2), byte for byte.
    const REFERENCE_FILE: &str = r#"{
  "watchers": [
    {
      "watcher_name": "rc-home-general",
      "session_id": "11111111-2222-3333-4444-555555555555",
      "room_id": "RID1",
      "room_type": "channel",
      "context_injected": true,
      "paused": false,
      "last_processed_ts": "1711234567890"
    },
    {
      "watcher_name": "rc-home-dm-zo\u00eb",
      "session_id": "",
      "room_id": "RID2",
      "room_type": "dm",
      "context_injected": false,
      "paused": true,
      "last_processed_ts": ""
    }
  ]
}"#;

    fn reference_records() -> Vec<WatcherRecord> {
        vec![
            WatcherRecord {
                watcher_name: "rc-home-general".into(),
                session_id: "11111111-2222-3333-4444-555555555555".into(),
                room_id: "RID1".into(),
                room_type: "channel".into(),
                context_injected: true,
                paused: false,
                last_processed_ts: "1711234567890".into(),
            },
            WatcherRecord {
                watcher_name: "rc-home-dm-zoë".into(),
                session_id: String::new(),
                room_id: "RID2".into(),
                room_type: "dm".into(),
                context_injected: false,
                paused: true,
                last_processed_ts: String::new(),
            },
        ]
    }

    fn state_in(dir: &tempfile::TempDir) -> StateFile {
        StateFile::for_connector(dir.path(), "rc-home")
    }

    #[test]
    fn path_is_per_connector() {
        let s = StateFile::for_connector(Path::new("/run/acg"), "rc-home");
        assert_eq!(s.path(), Path::new("/run/acg/state.rc-home.json"));
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(state_in(&dir).load().unwrap(), vec![]);
    }

    #[test]
    fn reads_reference_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        std::fs::write(state.path(), REFERENCE_FILE).unwrap();
        assert_eq!(state.load().unwrap(), reference_records());
    }

    #[test]
    fn writes_reference_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        state.save(&reference_records()).unwrap();
        assert_eq!(
            std::fs::read_to_string(state.path()).unwrap(),
            REFERENCE_FILE
        );
    }

    #[test]
    fn round_trip_reference_file() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        std::fs::write(state.path(), REFERENCE_FILE).unwrap();
        let records = state.load().unwrap();
        state.save(&records).unwrap();
        assert_eq!(
            std::fs::read_to_string(state.path()).unwrap(),
            REFERENCE_FILE
        );
        assert_eq!(state.load().unwrap(), records);
    }

    #[test]
    fn empty_list_shape() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        state.save(&[]).unwrap();
        assert_eq!(
            std::fs::read_to_string(state.path()).unwrap(),
            "{\n  \"watchers\": []\n}"
        );
    }

    #[test]
    fn non_ascii_escaped_like_python() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        let mut record = reference_records().remove(0);
        record.watcher_name = "a😀\u{7f}\"\\\n\u{1}é".into();
        state.save(std::slice::from_ref(&record)).unwrap();
        let text = std::fs::read_to_string(state.path()).unwrap();
        assert!(
            text.contains(r#""watcher_name": "a\ud83d\ude00\u007f\"\\\n\u0001\u00e9","#),
            "{text}"
        );
        assert!(text.is_ascii());
        assert_eq!(state.load().unwrap(), vec![record]);
    }

    #[test]
    fn saved_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        state.save(&reference_records()).unwrap();
        let mode = std::fs::metadata(state.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn save_creates_runtime_dir() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateFile::for_connector(&dir.path().join("a/b"), "x");
        state.save(&reference_records()).unwrap();
        assert_eq!(state.load().unwrap(), reference_records());
    }

    #[test]
    fn legacy_entries_upgraded_and_nameless_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        let legacy = r#"{"watchers": [
            {"watcher_id": "abcdef0123456789", "room_name": "general", "session_id": "S1",
             "room_id": "R1", "room_type": "group", "context_injected": true, "paused": true,
             "last_processed_ts": "17"},
            {"watcher_id": "only-id", "session_id": "S2"},
            {"session_id": "orphan", "room_id": "R9"},
            {"watcher_name": "w", "extra_key": {"nested": [1, 2]}, "another": 5}
        ]}"#;
        std::fs::write(state.path(), legacy).unwrap();
        let records = state.load().unwrap();
        assert_eq!(
            records,
            vec![
                WatcherRecord {
                    watcher_name: "general".into(),
                    session_id: "S1".into(),
                    room_id: "R1".into(),
                    room_type: "group".into(),
                    context_injected: true,
                    paused: false,
                    last_processed_ts: "17".into(),
                },
                WatcherRecord {
                    watcher_name: "only-id".into(),
                    session_id: "S2".into(),
                    room_id: String::new(),
                    room_type: "channel".into(),
                    context_injected: false,
                    paused: false,
                    last_processed_ts: String::new(),
                },
                WatcherRecord {
                    watcher_name: "w".into(),
                    session_id: String::new(),
                    room_id: String::new(),
                    room_type: "channel".into(),
                    context_injected: false,
                    paused: false,
                    last_processed_ts: String::new(),
                },
            ]
        );
    }

    #[test]
    fn document_without_watchers_key_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        std::fs::write(state.path(), "{}").unwrap();
        assert_eq!(state.load().unwrap(), vec![]);
    }

    #[test]
    fn corrupt_file_is_error_and_untouched() {
        for bad in [
            "{\"watchers\": [",
            "[]",
            "{\"watchers\": 3}",
            "{\"watchers\": [7]}",
            "{\"watchers\": [{\"watcher_name\": 5}]}",
            "{\"watchers\": [{\"watcher_name\": \"w\", \"paused\": \"yes\"}]}",
            "",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let state = state_in(&dir);
            std::fs::write(state.path(), bad).unwrap();
            let before = std::fs::metadata(state.path()).unwrap().modified().unwrap();
            match state.load() {
                Err(StateError::Corrupt { path, .. }) => assert_eq!(path, state.path()),
                other => panic!("{bad:?} gave {other:?}"),
            }
            assert_eq!(std::fs::read_to_string(state.path()).unwrap(), bad);
            let after = std::fs::metadata(state.path()).unwrap().modified().unwrap();
            assert_eq!(before, after);
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert_eq!(names.len(), 1, "no extra files for {bad:?}");
        }
    }

    #[test]
    fn invalid_utf8_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        std::fs::write(state.path(), b"{\"watchers\": [\xff]}").unwrap();
        assert!(matches!(state.load(), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn unreadable_path_is_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = state_in(&dir);
        std::fs::create_dir(state.path()).unwrap();
        assert!(matches!(state.load(), Err(StateError::Io { .. })));
    }

    /// The names of the entries of `dir`.
    fn file_names(dir: &Path) -> Vec<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect()
    }

    #[test]
    fn replace_file_replaces_sets_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.md");
        std::fs::write(&path, "old").unwrap();
        replace_file(&path, b"new", 0o600).unwrap();
        replace_file(&path, b"newer", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"newer");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names = file_names(dir.path());
        assert_eq!(names, vec![std::ffi::OsString::from("w.md")]);
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        atomic_write(&path, b"new", 0o640).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        // Only the target remains: the temp file was renamed away.
        let names = file_names(dir.path());
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
    }

    #[test]
    fn atomic_write_overwrites_stale_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        let tmp = dir
            .path()
            .join(format!("f.json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, "stale stale stale stale").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        atomic_write(&path, b"fresh", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"fresh");
        assert!(!tmp.exists());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn atomic_write_failure_leaves_target_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory, so the final rename fails.
        let path = dir.path().join("target");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        assert!(atomic_write(&path, b"data", 0o600).is_err());
        assert!(path.join("keep").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn atomic_write_missing_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        assert!(atomic_write(&dir.path().join("nope/f"), b"x", 0o600).is_err());
    }

    #[test]
    fn concurrent_writers_never_leave_a_mix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let a = vec![b'a'; 64 * 1024];
        let b = vec![b'b'; 64 * 1024];
        std::thread::scope(|s| {
            for content in [&a, &b] {
                let path = &path;
                s.spawn(move || {
                    for _ in 0..20 {
                        atomic_write(path, content, 0o600).unwrap();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..200 {
                    if let Ok(read) = std::fs::read(&path) {
                        assert!(read == a || read == b, "mixed content");
                    }
                }
            });
        });
    }
}
