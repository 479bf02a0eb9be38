//! agent-chat-gateway library facade (TODO).
