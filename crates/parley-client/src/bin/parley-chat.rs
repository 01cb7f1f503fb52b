//! `parley-chat`: Parley from a terminal or a script.
//!
//! ```text
//! parley-chat --url ws://host:8080/ws [--json] list
//! parley-chat --url ws://host:8080/ws [--json] tail
//! parley-chat --url ws://host:8080/ws [--json] open CONVERSATION_ID
//! ```
//!
//! The session token comes from `PARLEY_TOKEN` (a token in the arguments
//! would show in `ps` and shell history). `open` prints the latest history,
//! then sends every line read from stdin as a message and prints the
//! conversation's new messages; it ends at the end of stdin. Connection
//! events are printed as the client libraries admins know name them:
//! `open`, `close normal`, `close drop CODE`, `fail REASON`, `message …`.
//! Drops are followed by a reconnect and resume (nothing missed, nothing
//! twice). `--json` prints one JSON object per line instead. `wss://` URLs
//! are checked against the public roots and, with `--ca-file`, the
//! authorities in that PEM file.

use parley_client::{Client, Options, State};
use parley_core::protocol::{
    ConversationFilter, ConversationPage, Event, Message, MessagePage, NewMessage, Request,
};
use parley_core::ConversationId;
use serde_json::json;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncBufReadExt;

const USAGE: &str = "usage: PARLEY_TOKEN=… parley-chat --url ws[s]://HOST:PORT/ws [--ca-file CA.pem] [--json] list|tail|open CONVERSATION_ID";

enum Cmd {
    List,
    Tail,
    Open(ConversationId),
}

struct Args {
    url: String,
    /// PEM authorities to trust for wss:// besides the public ones.
    ca_file: Option<String>,
    json: bool,
    cmd: Cmd,
}

fn parse() -> Result<Args, String> {
    let mut url = None;
    let mut ca_file = None;
    let mut json = false;
    let mut rest = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--url" => url = Some(it.next().ok_or("--url needs a value")?),
            "--ca-file" => ca_file = Some(it.next().ok_or("--ca-file needs a value")?),
            "--json" => json = true,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => rest.push(a),
        }
    }
    let cmd = match rest.as_slice() {
        [c] if c == "list" => Cmd::List,
        [c] if c == "tail" => Cmd::Tail,
        [c, id] if c == "open" => Cmd::Open(
            id.parse()
                .map_err(|_| format!("{id:?} is not a conversation id"))?,
        ),
        _ => return Err(USAGE.into()),
    };
    Ok(Args {
        url: url.ok_or(USAGE)?,
        ca_file,
        json,
        cmd,
    })
}

/// Prints events as words or as JSON lines.
struct Out {
    json: bool,
}

impl Out {
    /// One line; a reader that went away is not an error worth a panic.
    fn line(&self, kind: &str, words: String, v: serde_json::Value) {
        use std::io::Write;
        let text = if self.json {
            let mut v = v;
            v["type"] = json!(kind);
            v.to_string()
        } else if words.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind} {words}")
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
    }

    fn message(&self, m: &Message) {
        self.line(
            "message",
            format!(
                "{} #{} {}: {}",
                m.conversation_id, m.seq, m.author_id, m.text
            ),
            json!({"conversation_id": m.conversation_id, "seq": m.seq, "id": m.id,
                   "author_id": m.author_id, "text": m.text, "created_at": m.created_at}),
        );
    }
}

/// Prints `open` / `close drop CODE` as the connection comes and goes. A
/// drop and reconnect quicker than one look still shows: the number of
/// connects moved.
fn watch(client: Arc<Client>, out: Arc<Out>) {
    tokio::spawn(async move {
        let mut was_live = true;
        let mut seen = client.connects();
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let state = client.state();
            if matches!(state, State::Closed(_)) {
                return;
            }
            let live = matches!(state, State::Live);
            let connects = client.connects();
            let reconnected = connects > seen;
            if was_live && (!live || reconnected) {
                let code = client.close_codes().last().copied().unwrap_or(1006);
                out.line(
                    "close",
                    format!("drop {code}"),
                    json!({"reason": "drop", "code": code}),
                );
            }
            if live && (!was_live || reconnected) {
                out.line("open", String::new(), json!({}));
            }
            was_live = live;
            seen = connects;
        }
    });
}

async fn run(args: Args, out: Arc<Out>) -> Result<(), String> {
    let token = std::env::var("PARLEY_TOKEN").map_err(|_| "PARLEY_TOKEN is not set".to_owned())?;
    let mut opts = Options::new(&args.url, token);
    opts.max_backoff = Duration::from_secs(2);
    if let Some(path) = &args.ca_file {
        opts.extra_ca_pem =
            Some(std::fs::read(path).map_err(|e| format!("--ca-file {path}: {e}"))?);
    }
    let client = Arc::new(Client::connect(opts).await.map_err(|e| e.to_string())?);
    out.line("open", String::new(), json!({}));
    watch(Arc::clone(&client), Arc::clone(&out));
    match args.cmd {
        Cmd::List => {
            let page: ConversationPage = client
                .call(Request::ListConversations {
                    filter: ConversationFilter::default(),
                })
                .await
                .map_err(|e| e.to_string())?;
            for c in page.conversations {
                out.line(
                    "conversation",
                    format!("{} {:?} {}", c.id, c.kind, c.title),
                    serde_json::to_value(&c).unwrap_or_default(),
                );
            }
        }
        Cmd::Tail => loop {
            if let Some(ev) = client.next_event(Duration::from_secs(3600)).await {
                print_event(&out, &ev, None);
            }
        },
        Cmd::Open(conv) => {
            let page: MessagePage = client
                .call(Request::History {
                    conversation_id: conv,
                    before: None,
                    after: None,
                    limit: Some(20),
                })
                .await
                .map_err(|e| e.to_string())?;
            for m in &page.messages {
                out.message(m);
            }
            if let Some(m) = page.messages.last() {
                client.track(conv, m.seq);
            }
            let events = {
                let client = Arc::clone(&client);
                let out = Arc::clone(&out);
                tokio::spawn(async move {
                    loop {
                        if let Some(ev) = client.next_event(Duration::from_secs(3600)).await {
                            print_event(&out, &ev, Some(conv));
                        }
                    }
                })
            };
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            let mut n = 0u64;
            let run_id = uuid::Uuid::new_v4().simple().to_string();
            while let Some(text) = lines.next_line().await.map_err(|e| e.to_string())? {
                if text.trim().is_empty() {
                    continue;
                }
                n += 1;
                // One key per line: a resend after a drop is stored once.
                let m = NewMessage {
                    text,
                    idempotency_key: Some(format!("chat-{run_id}-{n}")),
                    ..Default::default()
                };
                let sent = client
                    .send_reliably(conv, m, Duration::from_secs(60))
                    .await
                    .map_err(|e| e.to_string())?;
                out.line(
                    "sent",
                    format!("{} #{}", sent.conversation_id, sent.seq),
                    json!({"conversation_id": sent.conversation_id, "seq": sent.seq, "id": sent.id}),
                );
            }
            // Let the last messages' own events arrive before closing.
            tokio::time::sleep(Duration::from_millis(300)).await;
            events.abort();
        }
    }
    client.close();
    out.line(
        "close",
        "normal".into(),
        json!({"reason": "normal", "code": 1000}),
    );
    Ok(())
}

fn print_event(out: &Out, ev: &Event, only: Option<ConversationId>) {
    match ev {
        Event::MessageCreated { message, .. } => {
            if only.is_none_or(|c| c == message.conversation_id) {
                out.message(message);
            }
        }
        other => {
            if only.is_none() {
                let v = serde_json::to_value(other).unwrap_or_default();
                let kind = v["event"].as_str().unwrap_or("event").to_owned();
                out.line("event", kind, v);
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let out = Arc::new(Out { json: args.json });
    match run(args, Arc::clone(&out)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            out.line("fail", e.clone(), json!({"reason": e}));
            ExitCode::FAILURE
        }
    }
}
