//! Conversations in real time over real WebSocket connections, one module
//! per topic; helpers are in `parley_tests::chat`.

mod access;
mod actions;
mod batching;
mod bots;
mod calls;
mod chatting;
mod console;
mod contexts;
mod events;
mod feed;
mod forwarding;
mod hooks;
mod lists;
mod offline;
mod outage;
mod ownership;
mod pgbouncer;
mod reactions;
mod read_replica;
mod replies;
mod resume;
mod search;
mod timeline;
mod web_push;
mod webhooks;

pub use parley_bus::Bus;
pub use parley_client::Client;
pub use parley_core::protocol::{
    Conversation, Event, Message, MessagePage, NewMessage, ReadState, Request,
};
pub use parley_core::{ConversationId, ErrorCode, UserId};
pub use parley_tests::chat::*;
pub use parley_tests::serde_json::{json, Value};
pub use parley_tests::*;
pub use std::time::Duration;
