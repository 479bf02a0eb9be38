//! Claude Code CLI backend (TODO).
