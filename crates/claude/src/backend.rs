//! [`ClaudeBackend`]: the [`AgentBackend`] that drives the Claude Code CLI, one process per
//! session creation or turn (digest §4.1–§4.3, §4.5).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use acg_core::prompt::with_attachment_notes;
use acg_core::user_messages::EMPTY_RESPONSE;
use acg_core::{AgentBackend, AgentError, AgentResponse, EventSink, NewSession, TurnRequest};
use async_trait::async_trait;

use crate::classify::{classify, Exit};
use crate::process::{self, RunError, RunOutcome, RunSpec, RunTimings};

/// What a new session is told first (digest §4.1, in our own words): stay idle until spoken to.
pub const INIT_PROMPT: &str = "This chat session is now set up. You will answer messages that \
people send in a chat room. Take no action of your own for now; wait for the first message.";

/// The variable the CLI sets in its own children; a CLI that inherits it may believe it runs
/// nested inside another Claude Code, so it is never passed on.
pub const NESTED_SESSION_VAR: &str = "CLAUDECODE";

/// How to run the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaudeSettings {
    /// The program: a path, or a name looked up in `PATH` (config `command`, default `claude`).
    pub command: String,
    /// A settings file with the permission broker's `PreToolUse` hook. When set, creation and
    /// turns get `--dangerously-skip-permissions --settings <file>`, so the hook is the only gate.
    pub settings_file: Option<PathBuf>,
    /// Variables added to every child's environment (after the gateway's own, before the
    /// per-message ones). Tests use it for the offline environment.
    pub extra_env: Vec<(String, String)>,
    /// Ask for `--include-partial-messages`, so text streams as [`acg_core::AgentEvent::TextDelta`]s.
    pub include_partial_messages: bool,
}

impl ClaudeSettings {
    /// Settings for this program, with no permission broker, no extra environment and
    /// streamed text deltas.
    pub fn new(command: impl Into<String>) -> Self {
        ClaudeSettings {
            command: command.into(),
            settings_file: None,
            extra_env: Vec::new(),
            include_partial_messages: true,
        }
    }
}

impl Default for ClaudeSettings {
    fn default() -> Self {
        ClaudeSettings::new("claude")
    }
}

/// The Claude Code CLI as an agent backend. Stateless between calls: the CLI keeps each
/// session's transcript on disk and `--resume` continues it.
#[derive(Debug)]
pub struct ClaudeBackend {
    settings: ClaudeSettings,
    last_timings: Mutex<Option<RunTimings>>,
}

impl ClaudeBackend {
    /// A backend running the CLI as `settings` say.
    pub fn new(settings: ClaudeSettings) -> Self {
        ClaudeBackend {
            settings,
            last_timings: Mutex::new(None),
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ClaudeSettings {
        &self.settings
    }

    /// Where the time of the most recent finished run went (spawn, first output, parsing).
    pub fn last_timings(&self) -> Option<RunTimings> {
        *self.last_timings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The argv (without the program) that creates a session.
    pub fn create_args(&self, req: &NewSession) -> Vec<String> {
        let mut args = strings(&["-p", "--output-format", "json"]);
        args.extend(req.extra_args.iter().cloned());
        if let Some(title) = req.title.as_deref().filter(|t| !t.is_empty()) {
            args.extend(["--name".to_owned(), title.to_owned()]);
        }
        self.push_permission_args(&mut args);
        args
    }

    /// The argv (without the program) of one turn.
    pub fn turn_args(&self, req: &TurnRequest) -> Vec<String> {
        let mut args = strings(&["-p", "--resume", &req.session_id]);
        args.extend(strings(&["--output-format", "stream-json", "--verbose"]));
        if self.settings.include_partial_messages {
            args.push("--include-partial-messages".to_owned());
        }
        self.push_permission_args(&mut args);
        if let Some(file) = &req.system_prompt_file {
            args.push("--append-system-prompt-file".to_owned());
            args.push(file.to_string_lossy().into_owned());
            // The CLI records a session's system prompt on its first request and re-sends that
            // record on resume, ignoring a later --append-system-prompt-file; "off" renders it
            // afresh each turn, so the current file is what the model sees.
            args.extend(strings(&["--system-prompt-snapshot", "off"]));
        }
        args
    }

    fn push_permission_args(&self, args: &mut Vec<String>) {
        if let Some(file) = &self.settings.settings_file {
            args.push("--dangerously-skip-permissions".to_owned());
            args.push("--settings".to_owned());
            args.push(file.to_string_lossy().into_owned());
        }
    }

    /// The variables set on top of the inherited environment: `extra_env`, then `per_call`.
    fn env(&self, per_call: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
        let mut env = self.settings.extra_env.clone();
        env.extend(per_call);
        env
    }

    fn spec(
        &self,
        args: Vec<String>,
        env: Vec<(String, String)>,
        cwd: &Path,
        stdin: String,
        timeout: Duration,
    ) -> RunSpec {
        RunSpec {
            program: self.settings.command.clone(),
            args,
            env_remove: vec![NESTED_SESSION_VAR.to_owned()],
            env,
            cwd: cwd.to_path_buf(),
            stdin,
            deadline: tokio::time::Instant::now() + timeout,
        }
    }

    async fn run(&self, spec: &RunSpec, events: &EventSink) -> Result<RunOutcome, AgentError> {
        if !spec.cwd.is_dir() {
            return Err(AgentError::Other(format!(
                "working directory {} does not exist",
                spec.cwd.display()
            )));
        }
        let outcome = process::run(spec, events).await.map_err(|e| match e {
            RunError::Timeout => AgentError::Timeout,
            RunError::Spawn { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                AgentError::Unavailable(e.to_string())
            }
            RunError::LineTooLong => AgentError::Protocol(e.to_string()),
            RunError::Spawn { .. } | RunError::Io(_) => AgentError::Other(e.to_string()),
        })?;
        *self.last_timings.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome.timings);
        tracing::debug!(
            spawn_us = outcome.timings.spawn.as_micros() as u64,
            first_output_ms = outcome.timings.first_output.map(|d| d.as_millis() as u64),
            parse_us = outcome.timings.parse.as_micros() as u64,
            lines = outcome.timings.lines,
            total_ms = outcome.timings.total.as_millis() as u64,
            "claude run finished"
        );
        Ok(outcome)
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn log_failure(what: &str, outcome: &RunOutcome, error: &AgentError) {
    tracing::warn!(
        exit = %Exit::from(outcome.status),
        stderr = %outcome.stderr.trim(),
        "claude {what} failed: {error}"
    );
}

#[async_trait]
impl AgentBackend for ClaudeBackend {
    fn kind(&self) -> &str {
        "claude"
    }

    async fn create_session(&self, req: &NewSession) -> Result<String, AgentError> {
        let spec = self.spec(
            self.create_args(req),
            self.env([]),
            &req.working_directory,
            INIT_PROMPT.to_owned(),
            req.timeout,
        );
        let outcome = self.run(&spec, &EventSink::discard()).await?;
        let parsed = &outcome.parsed;
        if let Err(error) = classify(outcome.status.into(), parsed, &outcome.stderr, None) {
            log_failure("session creation", &outcome, &error);
            return Err(error);
        }
        if let Some(result) = parsed.result.as_ref().filter(|r| r.is_error) {
            let error = AgentError::Other(format!(
                "session creation ended in an error ({}): {}",
                result.subtype,
                result.result.as_deref().unwrap_or("")
            ));
            log_failure("session creation", &outcome, &error);
            return Err(error);
        }
        match parsed.session_id() {
            Some(id) if !id.is_empty() => Ok(id.to_owned()),
            _ => Err(AgentError::Protocol(
                "the agent reported no session_id".to_owned(),
            )),
        }
    }

    async fn turn(
        &self,
        req: &TurnRequest,
        events: &EventSink,
    ) -> Result<AgentResponse, AgentError> {
        let prompt = with_attachment_notes(&req.prompt, &req.attachments, &req.working_directory);
        let spec = self.spec(
            self.turn_args(req),
            self.env(req.env.iter().map(|(k, v)| (k.clone(), v.clone()))),
            &req.working_directory,
            prompt,
            req.timeout,
        );
        let outcome = self.run(&spec, events).await?;
        let parsed = &outcome.parsed;
        if let Err(error) = classify(
            outcome.status.into(),
            parsed,
            &outcome.stderr,
            Some(&req.session_id),
        ) {
            log_failure("turn", &outcome, &error);
            return Err(error);
        }
        let result = parsed.result.clone().unwrap_or_default();
        if result.is_error || !matches!(result.subtype.as_str(), "success" | "") {
            tracing::warn!(subtype = %result.subtype, "claude flagged its turn result as an error");
        }
        Ok(AgentResponse {
            text: parsed
                .reply_text()
                .unwrap_or_else(|| EMPTY_RESPONSE.to_owned()),
            is_error: result.is_error,
            session_id: parsed.session_id().map(str::to_owned),
            usage: result.usage,
            cost_usd: result.cost_usd,
            num_turns: result.num_turns,
            duration_ms: result.duration_ms,
            permission_denials: result.permission_denials,
        })
    }

    async fn delete_session(&self, session_id: &str, working_directory: &Path) {
        let Some(config_dir) = self.config_dir() else {
            return;
        };
        match crate::transcript::find(&config_dir, session_id, working_directory) {
            Some(path) => {
                if let Err(e) = tokio::fs::remove_file(&path).await {
                    tracing::warn!(path = %path.display(), "could not delete claude transcript: {e}");
                }
            }
            None => tracing::debug!(session_id, "no claude transcript to delete"),
        }
    }
}

impl ClaudeBackend {
    /// The CLI's configuration directory as the child would see it: `$CLAUDE_CONFIG_DIR`, else
    /// `$HOME/.claude` (with `extra_env` taking precedence over the gateway's environment).
    fn config_dir(&self) -> Option<PathBuf> {
        let var = |name: &str| {
            self.settings
                .extra_env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(name).ok())
                .filter(|v| !v.is_empty())
        };
        var("CLAUDE_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".claude")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn turn(system_prompt_file: Option<&str>) -> TurnRequest {
        TurnRequest {
            session_id: "sid-1".into(),
            prompt: "hello".into(),
            working_directory: "/w".into(),
            timeout: Duration::from_secs(5),
            attachments: vec![],
            env: BTreeMap::new(),
            system_prompt_file: system_prompt_file.map(PathBuf::from),
            watcher: None,
        }
    }

    #[test]
    fn create_args_follow_the_reference() {
        let backend = ClaudeBackend::new(ClaudeSettings::new("claude"));
        let mut req = NewSession {
            working_directory: "/w".into(),
            extra_args: vec!["--agent".into(), "x".into()],
            title: Some("agent-chat:general".into()),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(
            backend.create_args(&req),
            strings(&[
                "-p",
                "--output-format",
                "json",
                "--agent",
                "x",
                "--name",
                "agent-chat:general"
            ])
        );
        req.title = Some(String::new());
        req.extra_args.clear();
        assert_eq!(
            backend.create_args(&req),
            strings(&["-p", "--output-format", "json"])
        );

        let mut settings = ClaudeSettings::new("claude");
        settings.settings_file = Some("/s.json".into());
        let backend = ClaudeBackend::new(settings);
        assert_eq!(
            backend.create_args(&req),
            strings(&[
                "-p",
                "--output-format",
                "json",
                "--dangerously-skip-permissions",
                "--settings",
                "/s.json"
            ])
        );
    }

    #[test]
    fn turn_args_follow_the_reference() {
        let mut settings = ClaudeSettings::new("claude");
        settings.include_partial_messages = false;
        let backend = ClaudeBackend::new(settings.clone());
        assert_eq!(
            backend.turn_args(&turn(None)),
            strings(&[
                "-p",
                "--resume",
                "sid-1",
                "--output-format",
                "stream-json",
                "--verbose"
            ])
        );
        settings.include_partial_messages = true;
        settings.settings_file = Some("/s.json".into());
        let backend = ClaudeBackend::new(settings);
        assert_eq!(
            backend.turn_args(&turn(Some("/p/w.md"))),
            strings(&[
                "-p",
                "--resume",
                "sid-1",
                "--output-format",
                "stream-json",
                "--verbose",
                "--include-partial-messages",
                "--dangerously-skip-permissions",
                "--settings",
                "/s.json",
                "--append-system-prompt-file",
                "/p/w.md",
                "--system-prompt-snapshot",
                "off"
            ])
        );
        // The new-session arguments never reach a turn.
        assert!(!backend
            .turn_args(&turn(None))
            .contains(&"--name".to_owned()));
    }

    #[test]
    fn per_call_env_comes_last() {
        let mut settings = ClaudeSettings::new("claude");
        settings.extra_env = vec![
            ("HOME".into(), "/h".into()),
            ("ACG_ROLE".into(), "x".into()),
        ];
        let backend = ClaudeBackend::new(settings);
        let env = backend.env([("ACG_ROLE".to_owned(), "guest".to_owned())]);
        assert_eq!(
            env.last(),
            Some(&("ACG_ROLE".to_owned(), "guest".to_owned()))
        );
        assert_eq!(backend.config_dir(), Some(PathBuf::from("/h/.claude")));
    }

    #[test]
    fn kind_is_claude() {
        assert_eq!(
            ClaudeBackend::new(ClaudeSettings::default()).kind(),
            "claude"
        );
    }
}
