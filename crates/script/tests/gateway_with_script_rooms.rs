//! The script connector inside a real `Gateway`: inject into a watcher's room, read the reply,
//! pipe one room's reply into another, and find everything in the transcripts.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use acg_core::context::ContextSources;
use acg_core::gateway::{AgentSetup, ConnectorSetup, Gateway, GatewayOptions};
use acg_core::ports::{AgentBackend, Delivery, EventSink};
use acg_core::types::{AgentError, AgentResponse, NewSession, Role, TurnRequest};
use acg_core::watcher::WatcherSpec;
use acg_script::{ScriptConnector, ScriptError, ScriptReply};
use async_trait::async_trait;

/// Answers `<session>: <prompt>` and records prompts.
#[derive(Default)]
struct EchoAgent {
    prompts: Mutex<Vec<(String, String, String)>>,
}

#[async_trait]
impl AgentBackend for EchoAgent {
    fn kind(&self) -> &str {
        "echo"
    }

    async fn create_session(&self, req: &NewSession) -> Result<String, AgentError> {
        Ok(req.title.clone().unwrap_or_default())
    }

    async fn turn(&self, req: &TurnRequest, _: &EventSink) -> Result<AgentResponse, AgentError> {
        let role = req.env.get("ACG_ROLE").cloned().unwrap_or_default();
        self.prompts
            .lock()
            .unwrap()
            .push((req.session_id.clone(), req.prompt.clone(), role));
        Ok(AgentResponse {
            text: format!("{} says: {}", req.session_id, req.prompt),
            ..Default::default()
        })
    }
}

fn spec(name: &str, room: &str, dir: &Path) -> WatcherSpec {
    WatcherSpec {
        name: name.into(),
        connector: "jobs".into(),
        room: room.into(),
        agent: "echo".into(),
        pinned_session_id: None,
        working_directory: dir.to_path_buf(),
        new_session_args: Vec::new(),
        session_prefix: "s".into(),
        turn_timeout: Duration::from_secs(60),
        max_queue_depth: 10,
        context: ContextSources {
            watcher_name: name.into(),
            room: room.into(),
            connector_name: "jobs".into(),
            ..Default::default()
        },
        online_notification: None,
        offline_notification: None,
    }
}

async fn next(script: &ScriptConnector, room: &str) -> ScriptReply {
    tokio::time::timeout(Duration::from_secs(30), script.receive_reply(room))
        .await
        .expect("a reply within 30 s")
}

#[tokio::test]
async fn inject_receive_and_pipe_through_a_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let transcripts = dir.path().join("transcripts");
    let script = Arc::new(ScriptConnector::new("jobs").with_transcript_dir(&transcripts));
    assert_eq!(
        script.inject("draft", "too early").await,
        Err(ScriptError::NotConnected("jobs".into()))
    );
    let agent = Arc::new(EchoAgent::default());
    let (gw, report) = Gateway::start(
        GatewayOptions {
            runtime_dir: dir.path().join("runtime"),
            drain_timeout: Duration::from_secs(30),
        },
        vec![AgentSetup {
            name: "echo".into(),
            backend: agent.clone(),
        }],
        vec![ConnectorSetup {
            connector: script.clone(),
            connector_type: "script".into(),
            watchers: vec![
                spec("writer", "draft", dir.path()),
                spec("reviewer", "review", dir.path()),
            ],
        }],
    )
    .await;
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(script.is_subscribed("draft") && script.is_subscribed("review"));

    assert_eq!(
        script.inject("draft", "write a haiku").await,
        Ok(Delivery::Accepted)
    );
    let reply = next(&script, "draft").await;
    assert_eq!(reply.text, "s:draft says: write a haiku");
    assert!(!reply.is_error);

    // One watcher's answer becomes the other's prompt.
    assert_eq!(
        script.inject_as("draft", "again", "bob", Role::Guest).await,
        Ok(Delivery::Accepted)
    );
    assert_eq!(
        script.pipe_to("draft", "review").await,
        Ok(Delivery::Accepted)
    );
    let review = next(&script, "review").await;
    assert_eq!(review.text, "s:review says: s:draft says: again");

    let prompts = agent.prompts.lock().unwrap().clone();
    assert_eq!(
        prompts,
        vec![
            ("s:draft".into(), "write a haiku".into(), "owner".into()),
            ("s:draft".into(), "again".into(), "guest".into()),
            (
                "s:review".into(),
                "s:draft says: again".into(),
                "owner".into()
            ),
        ],
        "no header on script messages; role from the injection"
    );
    assert_eq!(
        script.inject("nobody-here", "x").await,
        Ok(Delivery::NoWatcher)
    );

    gw.shutdown().await;
    assert!(!script.is_subscribed("draft"));

    let draft = std::fs::read_to_string(transcripts.join("draft.jsonl")).unwrap();
    let lines: Vec<ScriptReply> = draft
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].text, "s:draft says: write a haiku");
    assert_eq!(lines[0].room, "draft");
    assert!(transcripts.join("review.jsonl").exists());
}
