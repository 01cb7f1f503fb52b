//! The bot flow end to end with the example bot of parley-client
//! (`examples/approval_bot.rs`): a bot user holds its own WebSocket session,
//! asks with buttons, hears the click and answers.

use crate::*;
use std::process::{Command, Stdio};

/// The example's binary, in the same target directory as this test.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    // Built by `cargo build -p parley-client --examples` (scripts/test.sh);
    // `cargo test` alone builds examples under hashed names, as test
    // harnesses, which cannot stand in for the program.
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p parley-client --examples` (scripts/test.sh does)",
        path.display()
    );
    path
}

#[actix_web::test]
async fn the_example_bot_asks_with_buttons_and_answers_the_click() {
    let p = pair().await;
    let app = p.env.app().await;
    let bot = bot_user(&app, &p.a, "approver-bot", "Approver").await;
    let bot_token = token(&app, &p.a, &bot).await;
    let g = group(&p.ca, "invoices", &[p.bob, uid(&bot)]).await;
    let child = Command::new(example("approval_bot"))
        .args([&p.server.ws_url(), &bot_token, &g.id.to_string(), "INV-7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example bot");
    let question = expect(&p.cb, "the bot's question", |e| match e {
        Event::MessageCreated { message, .. } if message.text == "Approve invoice INV-7?" => {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(question.author_id, uid(&bot));
    assert_eq!(question.actions.len(), 2);
    let _: Value =
        p.cb.call(Request::ActionInvoke {
            conversation_id: g.id,
            message_id: question.id,
            value: "approve".into(),
        })
        .await
        .expect("click");
    let answer = expect(&p.ca, "the bot's answer", |e| match e {
        Event::MessageCreated { message, .. }
            if message.author_id == uid(&bot) && message.reply_to.is_some() =>
        {
            Some(message.clone())
        }
        _ => None,
    })
    .await;
    assert_eq!(answer.text, "Invoice INV-7 approved by bob.");
    assert_eq!(answer.reply_to.map(|r| r.message_id), Some(question.id));
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("bot exits");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("asked {}", question.id)),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("approved {}", p.bob)), "{stdout}");
}
