//! A chat room for unit tests of the permission paths: a [`Connector`] that records what is
//! posted (every room resolves to [`room_named`]).

use std::sync::{Arc, Mutex};

use acg_core::ports::{Connector, InboundHandler};
use acg_core::{ConnectorError, OutgoingMessage, Room, RoomKind};
use async_trait::async_trait;

/// Records the messages posted to it, in order.
#[derive(Default)]
pub(crate) struct Chat {
    posts: Mutex<Vec<OutgoingMessage>>,
}

impl Chat {
    /// The texts posted so far.
    pub(crate) fn texts(&self) -> Vec<String> {
        self.posts
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.text.clone())
            .collect()
    }
}

#[async_trait]
impl Connector for Chat {
    fn name(&self) -> &str {
        "chat"
    }
    fn platform(&self) -> &str {
        "Test"
    }
    async fn connect(&self, _: Arc<dyn InboundHandler>) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn disconnect(&self) {}
    async fn resolve_room(&self, room: &str) -> Result<Room, ConnectorError> {
        Ok(room_named(room))
    }
    async fn subscribe(&self, _: &Room, _: Option<i64>) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn unsubscribe(&self, _: &Room) {}
    async fn send(&self, _: &Room, msg: OutgoingMessage) -> Result<(), ConnectorError> {
        self.posts.lock().unwrap().push(msg);
        Ok(())
    }
}

/// The channel `name` (id `id-<name>`).
pub(crate) fn room_named(name: &str) -> Room {
    Room {
        id: format!("id-{name}"),
        name: name.into(),
        kind: RoomKind::Channel,
    }
}
