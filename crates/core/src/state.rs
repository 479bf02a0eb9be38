//! `state.<connector>.json` (digest §8.2), in the reference's shape so existing sessions
//! carry over, plus the one atomic-write helper every state file uses.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    pub fn load(&self) -> Result<Vec<WatcherRecord>, StateError> {
        todo!()
    }

    /// Writes the records atomically (`indent=2` JSON, like the reference).
    pub fn save(&self, records: &[WatcherRecord]) -> Result<(), StateError> {
        todo!("{records:?}")
    }
}

/// Writes `bytes` to `path` via a temp file in the same directory: write, fsync, set `mode`,
/// rename over, fsync the directory. Readers see the old or the new content, never a mix.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    todo!("{path:?}{bytes:?}{mode}")
}
