//! The durable session context (digest §3.5): a session-identity header, the built-in
//! platform and tool documents, then the connector's, agent's and watcher's context files,
//! with size limits. Written to `<runtime>/system-prompts/<watcher>.md` and appended to the
//! agent's system prompt on every turn.

use std::path::{Path, PathBuf};

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
    /// Built-in documents (layer 0), already chosen by the caller.
    pub builtin: Vec<String>,
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

/// The built-in document that explains a platform's header format and rules to the agent.
pub fn builtin_platform_context(platform_type: &str) -> Option<&'static str> {
    todo!("{platform_type}")
}

/// The built-in tool documents: the lazy index, or the full manuals when not lazy.
pub fn builtin_tool_context(lazy_instruction_loading: bool) -> Vec<&'static str> {
    todo!("{lazy_instruction_loading}")
}

/// Builds the context text, applying the 256 KiB per-file and 512 KiB total limits.
pub fn build_context(sources: &ContextSources) -> Result<BuiltContext, ContextError> {
    todo!("{sources:?}")
}

/// Writes `<runtime_dir>/system-prompts/<watcher>.md` atomically (mode 0600) and returns its path.
pub fn write_system_prompt(runtime_dir: &Path, watcher: &str, text: &str) -> std::io::Result<PathBuf> {
    todo!("{runtime_dir:?}{watcher}{text}")
}
