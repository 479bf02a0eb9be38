//! Routes each normalized inbound message to the watchers of its room, after giving the
//! [`Interceptor`] (the approval registry's, see [`crate::approval`]) the chance to consume
//! owners' `approve`/`deny` commands before anything is queued.
//!
//! One dispatcher serves one connector (room ids are only unique within a platform). Running
//! watchers register their [`Inbox`] under their room id; a message goes to every watcher of
//! its room and is accepted if any of them queued it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use tracing::debug;

use crate::ports::{Delivery, InboundHandler};
use crate::types::IncomingMessage;
use crate::watcher::Inbox;

/// Something that may consume a message before it reaches any watcher queue (the permission
/// registry's `approve ab12` / `deny ab12`).
#[async_trait]
pub trait Interceptor: Send + Sync {
    /// Returns true when the message was consumed by the gateway itself; it then never
    /// reaches an agent and counts as answered.
    async fn intercept(&self, msg: &IncomingMessage) -> bool;
}

/// The router of one connector's inbound messages.
#[derive(Default)]
pub struct Dispatcher {
    routes: RwLock<HashMap<String, Vec<Inbox>>>,
    interceptor: RwLock<Option<Arc<dyn Interceptor>>>,
}

impl Dispatcher {
    /// An empty dispatcher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes messages of `room_id` to `inbox` too (replacing an older inbox of the same
    /// watcher).
    pub fn register(&self, room_id: &str, inbox: Inbox) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        let inboxes = routes.entry(room_id.to_string()).or_default();
        inboxes.retain(|i| i.watcher() != inbox.watcher());
        inboxes.push(inbox);
    }

    /// Stops routing messages of `room_id` to `watcher`.
    pub fn unregister(&self, room_id: &str, watcher: &str) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        if let Some(inboxes) = routes.get_mut(room_id) {
            inboxes.retain(|i| i.watcher() != watcher);
            if inboxes.is_empty() {
                routes.remove(room_id);
            }
        }
    }

    /// Names of the watchers currently registered for a room.
    pub fn watchers_of(&self, room_id: &str) -> Vec<String> {
        let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
        routes
            .get(room_id)
            .map(|inboxes| inboxes.iter().map(|i| i.watcher().to_string()).collect())
            .unwrap_or_default()
    }

    /// Installs the interceptor consulted before any message is queued.
    pub fn set_interceptor(&self, interceptor: Arc<dyn Interceptor>) {
        *self.interceptor.write().unwrap_or_else(|p| p.into_inner()) = Some(interceptor);
    }
}

#[async_trait]
impl InboundHandler for Dispatcher {
    async fn deliver(&self, msg: IncomingMessage) -> Delivery {
        // ─── HOOK(permissions) ────────────────────────────────────────────────────────────
        // `approve <id>` / `deny <id>` from an owner is intercepted HERE, before any queueing,
        // so it reaches the permission registry even while the room's watcher is blocked
        // inside the very turn that waits for the decision. `Gateway::start` installs the
        // approval registry's interceptor (`approval::ApprovalRegistry::interceptor`).
        let interceptor = self
            .interceptor
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(interceptor) = interceptor {
            if interceptor.intercept(&msg).await {
                return Delivery::Intercepted;
            }
        }
        // ───────────────────────────────────────────────────────────────────────────────────

        let inboxes = {
            let routes = self.routes.read().unwrap_or_else(|p| p.into_inner());
            routes.get(&msg.room.id).cloned().unwrap_or_default()
        };
        if inboxes.is_empty() {
            debug!(room = %msg.room.id, message = %msg.id, "no watcher for this room");
            return Delivery::NoWatcher;
        }
        let mut accepted = false;
        for inbox in &inboxes {
            if inbox.offer(msg.clone()) == Delivery::Accepted {
                accepted = true;
            }
        }
        if accepted {
            Delivery::Accepted
        } else {
            Delivery::Rejected
        }
    }
}
