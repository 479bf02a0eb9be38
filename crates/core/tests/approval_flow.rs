//! Approvals through the real watcher and dispatcher: a turn that waits for an owner keeps the
//! room's later messages queued, owners' commands get through while it waits, guests' do not
//! count, and pause / reset / shutdown deny a pending request without a chat message.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use acg_core::approval::{ApprovalRegistry, Ask, Decision};
use acg_core::gateway::{ConnectorSetup, Gateway, StartReport};
use acg_core::ports::{AgentBackend, Delivery, EventSink};
use acg_core::types::*;
use async_trait::async_trait;
use common::*;
use serde_json::json;

/// An agent that, for a prompt containing "tool", asks the registry about a Bash call the way
/// the Claude permission broker does, and answers with the decision it got.
struct AskingAgent {
    approvals: Arc<ApprovalRegistry>,
    prompts: Mutex<Vec<String>>,
    decisions: Mutex<Vec<Decision>>,
}

impl AskingAgent {
    fn new(approvals: &Arc<ApprovalRegistry>) -> Arc<Self> {
        Arc::new(AskingAgent {
            approvals: approvals.clone(),
            prompts: Mutex::new(Vec::new()),
            decisions: Mutex::new(Vec::new()),
        })
    }
    fn prompts(&self) -> Vec<String> {
        self.prompts.lock().unwrap().clone()
    }
    fn decisions(&self) -> Vec<Decision> {
        self.decisions.lock().unwrap().clone()
    }
}

#[async_trait]
impl AgentBackend for AskingAgent {
    fn kind(&self) -> &str {
        "asking"
    }

    async fn create_session(&self, _req: &NewSession) -> Result<String, AgentError> {
        Ok("sess-1".into())
    }

    async fn turn(&self, req: &TurnRequest, _: &EventSink) -> Result<AgentResponse, AgentError> {
        self.prompts.lock().unwrap().push(req.prompt.clone());
        let text = if req.prompt.contains("tool") {
            let outcome = self
                .approvals
                .ask(Ask {
                    session_id: req.session_id.clone(),
                    tool: "Bash".into(),
                    input: vec![("command".into(), json!("make deploy"))],
                    timeout: Duration::from_secs(120),
                    require_other_owner: false,
                })
                .await;
            self.decisions
                .lock()
                .unwrap()
                .push(outcome.decision.clone());
            format!("decision: {:?}", outcome.decision)
        } else {
            format!("plain: {}", req.prompt)
        };
        Ok(AgentResponse {
            text,
            ..Default::default()
        })
    }
}

async fn start(
    dir: &std::path::Path,
    approvals: &Arc<ApprovalRegistry>,
    agent: &Arc<AskingAgent>,
    connector: &Arc<FakeConnector>,
) -> (Arc<Gateway>, StartReport) {
    Gateway::start_with_approvals(
        options(dir),
        vec![acg_core::gateway::AgentSetup {
            name: "a".into(),
            backend: agent.clone(),
        }],
        vec![ConnectorSetup {
            connector: connector.clone(),
            connector_type: "fake".into(),
            watchers: vec![spec("w", "fake", "general", "a", dir)],
        }],
        approvals.clone(),
    )
    .await
}

fn from(user: &str, role: Role, id: &str, text: &str, ts: i64) -> IncomingMessage {
    let mut m = msg("general", id, text, ts);
    m.sender.username = user.into();
    m.sender.id = format!("u-{user}");
    m.role = role;
    m
}

async fn pending_id(approvals: &ApprovalRegistry) -> String {
    let mut id = None;
    wait_until("a permission request is pending", || {
        id = approvals.pending().first().map(|r| r.id.clone());
        id.is_some()
    })
    .await;
    id.unwrap()
}

#[tokio::test]
async fn later_messages_wait_in_the_queue_while_an_owner_decides() {
    let dir = tempfile::tempdir().unwrap();
    let approvals = Arc::new(ApprovalRegistry::new());
    let agent = AskingAgent::new(&approvals);
    let connector = FakeConnector::new("fake");
    let (gw, report) = start(dir.path(), &approvals, &agent, &connector).await;
    assert!(report.errors.is_empty(), "{report:?}");

    assert_eq!(
        connector
            .post(from("alice", Role::Owner, "m1", "use a tool", 1000))
            .await,
        Delivery::Accepted
    );
    let id = pending_id(&approvals).await;
    let request = &approvals.pending()[0];
    assert_eq!(request.requester, "alice");
    assert_eq!(request.watcher, "w");
    assert_eq!(request.room.id, FakeConnector::room("general").id);
    assert!(connector.texts("general")[0].starts_with(&format!(
        "🔐 **Permission required** `[{id}]`\n**Tool:** `Bash`\n**Params:** `command='make deploy'`"
    )));

    // The watcher is inside its turn: a new message waits in the queue.
    assert_eq!(
        connector
            .post(from("carol", Role::Guest, "m2", "hello there", 2000))
            .await,
        Delivery::Accepted
    );
    // A guest typing the command is ordinary chat: queued for the agent, not a decision.
    assert_eq!(
        connector
            .post(from(
                "carol",
                Role::Guest,
                "m3",
                &format!("approve {id}"),
                3000
            ))
            .await,
        Delivery::Accepted
    );
    assert_eq!(gw.list(None).unwrap()[0].queued, 2);
    assert_eq!(agent.prompts().len(), 1);
    assert_eq!(approvals.pending().len(), 1);

    // The owner's answer is consumed before the queue, although the watcher is busy.
    assert_eq!(
        connector
            .post(from(
                "bob",
                Role::Owner,
                "m4",
                &format!("Approve {id}"),
                4000
            ))
            .await,
        Delivery::Intercepted
    );
    wait_until("both turns answered", || agent.prompts().len() == 2).await;
    wait_until("replies posted", || {
        connector
            .texts("general")
            .iter()
            .any(|t| t.starts_with("plain:"))
    })
    .await;
    assert_eq!(
        agent.decisions(),
        vec![Decision::Approved { by: "bob".into() }]
    );
    let texts = connector.texts("general");
    assert!(
        texts.contains(&format!("✅ Permission `{id}` approved.")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("Approved")), "{texts:?}");
    // The queued messages became one catch-up turn after the decision.
    let second = &agent.prompts()[1];
    assert!(second.contains("hello there"), "{second}");
    assert!(second.contains(&format!("approve {id}")), "{second}");
    gw.shutdown().await;
}

async fn assert_denied_silently_by(what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let approvals = Arc::new(ApprovalRegistry::new());
    let agent = AskingAgent::new(&approvals);
    let connector = FakeConnector::new("fake");
    let (gw, _) = start(dir.path(), &approvals, &agent, &connector).await;
    connector
        .post(from("alice", Role::Owner, "m1", "use a tool", 1000))
        .await;
    let id = pending_id(&approvals).await;
    match what {
        "pause" => gw.pause("w", None).await.unwrap(),
        "reset" => gw.reset("w", None).await.unwrap(),
        _ => gw.shutdown().await,
    }
    assert_eq!(agent.decisions(), vec![Decision::Cancelled], "{what}");
    assert!(approvals.pending().is_empty(), "{what}");
    let texts = connector.texts("general");
    // Only the request itself and the agent's answer: no timeout or denial notice.
    assert!(
        !texts
            .iter()
            .any(|t| t.contains(&format!("Permission `{id}`"))),
        "{what}: {texts:?}"
    );
    if what == "reset" {
        // Restarted: its next request is asked again.
        connector
            .post(from("alice", Role::Owner, "m2", "another tool", 2000))
            .await;
        let again = pending_id(&approvals).await;
        assert_ne!(again, "");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn pause_denies_a_pending_request_without_a_message() {
    assert_denied_silently_by("pause").await;
}

#[tokio::test]
async fn reset_denies_a_pending_request_without_a_message() {
    assert_denied_silently_by("reset").await;
}

#[tokio::test]
async fn shutdown_denies_a_pending_request_without_a_message() {
    assert_denied_silently_by("shutdown").await;
}

#[tokio::test]
async fn commands_without_a_pending_request_are_still_answered_by_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let approvals = Arc::new(ApprovalRegistry::new());
    let agent = AskingAgent::new(&approvals);
    let connector = FakeConnector::new("fake");
    let (gw, _) = start(dir.path(), &approvals, &agent, &connector).await;
    assert_eq!(
        connector
            .post(from("bob", Role::Owner, "m1", "deny q1w2", 1000))
            .await,
        Delivery::Intercepted
    );
    assert_eq!(
        connector.texts("general"),
        vec!["⚠️ No pending permission request with ID `q1w2`.".to_string()]
    );
    assert!(agent.prompts().is_empty());
    gw.shutdown().await;
}
