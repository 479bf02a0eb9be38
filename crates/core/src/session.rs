//! The scripting API: drive one agent session from Rust code without any chat platform.
//! Explicit `start`/`stop`; several `send`s reuse one session; `send` before `start` fails.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use acg_core::session::{AgentSession, SessionError};
//! # async fn demo(backend: Arc<dyn acg_core::AgentBackend>) -> Result<(), SessionError> {
//! let a = AgentSession::new(backend.clone(), "/work/project");
//! let b = AgentSession::new(backend, "/work/project").with_title("reviewer");
//! a.start().await?;
//! b.start().await?;
//! // One session's reply becomes the next session's prompt.
//! let review = b.send(&a.send("Draft a haiku about Rust").await?.text).await?;
//! println!("{}", review.text);
//! a.stop().await;
//! b.stop().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::ports::{AgentBackend, EventSink};
use crate::types::{AgentError, AgentResponse, NewSession, TurnRequest};
use crate::user_messages;

/// The default per-turn (and session creation) deadline: the config default of `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(360);

/// Why a scripting call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SessionError {
    /// `send` was called before `start`/`resume` (or after `stop`).
    #[error("the agent session is not started; call start() or resume() first")]
    NotStarted,
    /// The agent failed (session creation or a turn).
    #[error(transparent)]
    Agent(#[from] AgentError),
}

/// One agent session driven from code. Turns of one session run one at a time; `&self`
/// methods make it easy to share (`Arc<AgentSession>`) between tasks.
pub struct AgentSession {
    backend: Arc<dyn AgentBackend>,
    working_directory: PathBuf,
    timeout: Duration,
    new_session_args: Vec<String>,
    title: Option<String>,
    system_prompt_file: Option<PathBuf>,
    env: BTreeMap<String, String>,
    session: Mutex<Option<String>>,
}

impl AgentSession {
    /// A session (not yet started) of `backend` working in `working_directory`.
    pub fn new(backend: Arc<dyn AgentBackend>, working_directory: impl Into<PathBuf>) -> Self {
        AgentSession {
            backend,
            working_directory: working_directory.into(),
            timeout: DEFAULT_TIMEOUT,
            new_session_args: Vec::new(),
            title: None,
            system_prompt_file: None,
            env: BTreeMap::new(),
            session: Mutex::new(None),
        }
    }

    /// Deadline of each turn and of session creation.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Extra CLI arguments used when the session is created (`new_session_args`).
    pub fn with_new_session_args(mut self, args: Vec<String>) -> Self {
        self.new_session_args = args;
        self
    }

    /// A human title for the new session.
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = Some(title.into());
        self
    }

    /// A file appended to the agent's system prompt on every turn.
    pub fn with_system_prompt_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.system_prompt_file = Some(path.into());
        self
    }

    /// An environment variable for the agent process of every turn (e.g. `ACG_ROLE`).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Creates the agent session and returns its id. Already started = the current id.
    pub async fn start(&self) -> Result<String, SessionError> {
        let mut session = self.session.lock().await;
        if let Some(id) = session.as_ref() {
            return Ok(id.clone());
        }
        let request = NewSession {
            working_directory: self.working_directory.clone(),
            extra_args: self.new_session_args.clone(),
            title: self.title.clone(),
            timeout: self.timeout,
        };
        let id = self.backend.create_session(&request).await?;
        *session = Some(id.clone());
        Ok(id)
    }

    /// Attaches to an existing session instead of creating one.
    pub async fn resume(&self, session_id: impl Into<String>) {
        *self.session.lock().await = Some(session_id.into());
    }

    /// Detaches from the session; later `send`s fail until `start`/`resume`. The agent keeps
    /// the session (it can be resumed by id).
    pub async fn stop(&self) {
        self.session.lock().await.take();
    }

    /// The session id, once started.
    pub async fn session_id(&self) -> Option<String> {
        self.session.lock().await.clone()
    }

    /// Sends one prompt in the session and returns the agent's reply (an empty reply reads
    /// `(empty response)`).
    pub async fn send(&self, text: &str) -> Result<AgentResponse, SessionError> {
        self.send_with(text, Vec::new(), &EventSink::discard())
            .await
    }

    /// Like [`send`](Self::send), with local files for the agent to read and a sink for
    /// progress events.
    pub async fn send_with(
        &self,
        text: &str,
        attachments: Vec<PathBuf>,
        events: &EventSink,
    ) -> Result<AgentResponse, SessionError> {
        // Holding the lock for the whole turn keeps this session's turns strictly sequential.
        let session = self.session.lock().await;
        let Some(session_id) = session.as_ref() else {
            return Err(SessionError::NotStarted);
        };
        let request = TurnRequest {
            session_id: session_id.clone(),
            prompt: text.to_string(),
            working_directory: self.working_directory.clone(),
            timeout: self.timeout,
            attachments,
            env: self.env.clone(),
            system_prompt_file: self.system_prompt_file.clone(),
            watcher: None,
        };
        let mut response = self.backend.turn(&request, events).await?;
        if response.text.trim().is_empty() {
            response.text = user_messages::EMPTY_RESPONSE.to_string();
        }
        Ok(response)
    }
}
