//! The console client `parley-chat` (crates/parley-client/src/bin): lists,
//! opens a conversation, sends stdin lines, prints what others write, and
//! survives a cut connection (prints `close drop`, then `open`, and misses
//! nothing), in `--json` form for scripts.

use crate::*;
use parley_tests::faults::Proxy;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

fn parley_chat() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("parley-chat");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p parley-client --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The program, and its stdout lines (JSON) as they come.
fn start(url: &str, token: &str, args: &[&str]) -> (Child, mpsc::Receiver<Value>) {
    let mut child = Command::new(parley_chat())
        .args(["--url", url, "--json"])
        .args(args)
        .env("PARLEY_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start parley-chat");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line).unwrap_or(json!({"raw": line}));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The next printed line that `pick` accepts (others skipped).
async fn next(rx: &mpsc::Receiver<Value>, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match rx.try_recv() {
            Ok(v) if pick(&v) => return v,
            Ok(_) => {}
            Err(mpsc::TryRecvError::Empty) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "parley-chat never printed {what}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(mpsc::TryRecvError::Disconnected) => panic!("parley-chat ended before {what}"),
        }
    }
}

#[actix_web::test]
async fn the_console_client_chats_and_survives_a_cut_connection() {
    let p = pair().await;
    let app = p.env.app().await;
    let g = group(&p.ca, "console", &[p.bob]).await;
    send(&p.cb, g.id, text("before the console")).await;
    let proxy = Proxy::start(p.server.addr).await;
    let url = format!("ws://{}/ws", proxy.addr);
    let ta = token(&app, &p.a, &p.alice.to_string()).await;

    // list: the group is there, then a normal close.
    let (mut lister, rx) = start(&url, &ta, &["list"]);
    let c = next(&rx, "the group", |v| {
        v["type"] == "conversation" && v["id"] == json!(g.id)
    })
    .await;
    assert_eq!(c["title"], "console");
    next(&rx, "close normal", |v| {
        v["type"] == "close" && v["reason"] == "normal"
    })
    .await;
    assert!(lister.wait().expect("exit").success());

    // open: history first, then stdin lines go out, others' messages come in.
    let (mut chat, rx) = start(&url, &ta, &["open", &g.id.to_string()]);
    next(&rx, "open", |v| v["type"] == "open").await;
    next(&rx, "the history", |v| {
        v["type"] == "message" && v["text"] == "before the console"
    })
    .await;
    let mut stdin = chat.stdin.take().expect("stdin");
    writeln!(stdin, "hello from the console").expect("write");
    next(&rx, "sent", |v| v["type"] == "sent").await;
    let author = expect(&p.cb, "the console's line", |e| match e {
        Event::MessageCreated { message, .. } if message.text == "hello from the console" => {
            Some(message.author_id)
        }
        _ => None,
    })
    .await;
    assert_eq!(author, p.alice);
    send(&p.cb, g.id, text("hi console")).await;
    next(&rx, "bob's message", |v| {
        v["type"] == "message" && v["text"] == "hi console"
    })
    .await;

    // The connection is cut: a drop, a reconnect, and what bob wrote in
    // between arrives once.
    proxy.cut_all();
    next(&rx, "close drop", |v| {
        v["type"] == "close" && v["reason"] == "drop"
    })
    .await;
    send(&p.cb, g.id, text("while you were cut off")).await;
    // `open` and the replayed message, in whichever order they print.
    let mut opened = false;
    let mut missed = Vec::new();
    while !opened || missed.is_empty() {
        let v = next(&rx, "open again and the missed message", |v| {
            v["type"] == "open" || v["type"] == "message"
        })
        .await;
        if v["type"] == "open" {
            opened = true;
        } else {
            missed.push(v["text"].clone());
        }
    }
    assert_eq!(missed, [json!("while you were cut off")]);
    writeln!(stdin, "back again").expect("write");
    expect_event(
        &p.cb,
        "the line after the drop",
        |e| matches!(e, Event::MessageCreated { message, .. } if message.text == "back again"),
    )
    .await;

    // End of stdin: a normal close and exit 0.
    drop(stdin);
    next(&rx, "close normal", |v| {
        v["type"] == "close" && v["reason"] == "normal"
    })
    .await;
    assert!(chat.wait().expect("exit").success());

    // A wrong token: `fail` and a non-zero exit.
    let (mut bad, rx) = start(&url, "pst_not-a-token", &["list"]);
    next(&rx, "fail", |v| v["type"] == "fail").await;
    assert!(!bad.wait().expect("exit").success());
}
