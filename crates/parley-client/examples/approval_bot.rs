//! A bot that asks for an invoice's approval with two buttons and answers
//! the click: the bot flow of docs/integrations (bots hold their own
//! WebSocket session with a token the infobase issued for the bot user).
//!
//! ```sh
//! cargo run -p parley-client --example approval_bot -- \
//!     ws://127.0.0.1:8080/ws pst_BOT_TOKEN CONVERSATION_ID INV-7
//! ```
//!
//! It posts "Approve invoice INV-7?" with Approve / Reject (single use: the
//! first click decides for everyone), waits for `action.invoked` on that
//! message, replies to it with the decision and who made it, and exits. It
//! prints one line per step, for scripts.

use parley_client::{Client, Options};
use parley_core::protocol::{Action, Event, Message, NewMessage, Request};
use parley_core::ConversationId;
use std::time::Duration;

async fn run(
    url: &str,
    token: &str,
    conversation: ConversationId,
    invoice: &str,
) -> Result<(), String> {
    let bot = Client::connect(Options::new(url, token))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let question: Message = bot
        .call(Request::Send {
            conversation_id: conversation,
            message: NewMessage {
                text: format!("Approve invoice {invoice}?"),
                data: Some(serde_json::json!({ "invoice": invoice })),
                actions: vec![
                    Action {
                        value: "approve".into(),
                        caption: "Approve".into(),
                        single_use: true,
                    },
                    Action {
                        value: "reject".into(),
                        caption: "Reject".into(),
                        single_use: true,
                    },
                ],
                idempotency_key: Some(format!("approval-{invoice}")),
                ..Default::default()
            },
        })
        .await
        .map_err(|e| format!("ask: {e}"))?;
    println!("asked {}", question.id);
    // The click comes to the author of the message: this bot's session.
    let invocation = loop {
        match bot.next_event(Duration::from_secs(600)).await {
            Some(Event::ActionInvoked { invocation }) if invocation.message_id == question.id => {
                break invocation
            }
            Some(_) => continue,
            None => return Err("no answer within 10 minutes".into()),
        }
    };
    let decision = if invocation.value == "approve" {
        "approved"
    } else {
        "rejected"
    };
    let users: serde_json::Value = bot
        .request(Request::GetUsers {
            user_ids: vec![invocation.user_id],
        })
        .await
        .map_err(|e| format!("who: {e}"))?;
    let who = users["users"][0]["name"]
        .as_str()
        .unwrap_or("someone")
        .to_owned();
    let reply: Message = bot
        .call(Request::Send {
            conversation_id: conversation,
            message: NewMessage {
                text: format!("Invoice {invoice} {decision} by {who}."),
                reply_to: Some(question.id),
                idempotency_key: Some(format!("approval-{invoice}-answer")),
                ..Default::default()
            },
        })
        .await
        .map_err(|e| format!("answer: {e}"))?;
    println!("{decision} {} {}", invocation.user_id, reply.id);
    bot.close();
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, token, conversation, invoice] = args.as_slice() else {
        eprintln!("usage: approval_bot WS_URL BOT_TOKEN CONVERSATION_ID INVOICE");
        return std::process::ExitCode::from(2);
    };
    let Ok(conversation) = conversation.parse::<uuid::Uuid>() else {
        eprintln!("approval_bot: CONVERSATION_ID must be a UUID");
        return std::process::ExitCode::from(2);
    };
    match run(url, token, ConversationId(conversation), invoice).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("approval_bot: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
