//! Group commit: concurrent sends of several senders in several
//! conversations commit in one transaction, each send judged on its own,
//! and fan out in `seq` order.

use crate::*;
use parley_core::UserActor;
use std::collections::HashMap;

/// Users of a new infobase, as the service sees them, and their tokens.
async fn people(env: &TestEnv, tag: &str, names: &[&str]) -> (Vec<UserActor>, Vec<String>) {
    let app = env.app().await;
    let a = register(&app, &email(tag), "A").await;
    let mut actors = Vec::new();
    let mut tokens = Vec::new();
    for name in names {
        let id = user(&app, &a, name).await;
        let t = token(&app, &a, &id).await;
        let actor: UserActor = env
            .state
            .svc
            .authenticate_token(&t)
            .await
            .expect("a live token");
        actors.push(actor);
        tokens.push(t);
    }
    (actors, tokens)
}

#[actix_web::test]
async fn concurrent_sends_commit_together_each_judged_on_its_own_in_seq_order() {
    // One worker: every send below waits in one queue.
    let env = TestEnv::with_db_proxy(|c| c.commit.workers = 1).await;
    let (actors, tokens) = people(&env, "gc", &["alice", "bob", "carol"]).await;
    let (alice, bob, carol) = (&actors[0], &actors[1], &actors[2]);
    let svc = &env.state.svc;
    let g1 = svc
        .create_group(alice, "one", vec![bob.id()])
        .await
        .expect("group one");
    let g2 = svc
        .create_group(alice, "two", vec![bob.id()])
        .await
        .expect("group two");
    let server = env.server().await;
    let cb = client(&server, &tokens[1]).await;

    // Plain sends of Alice and Bob to both groups, interleaved; Carol (not
    // a member); a send to a stranger; three sends of one idempotency key.
    let keyed = NewMessage {
        text: "keyed".into(),
        idempotency_key: Some("k".into()),
        ..Default::default()
    };
    let mut plan: Vec<(&UserActor, ConversationId, NewMessage, &str)> = Vec::new();
    for i in 0..40 {
        let who = if i % 3 == 0 { bob } else { alice };
        let conv = if i % 2 == 0 { g1.id } else { g2.id };
        plan.push((who, conv, text(&format!("m{i}")), "ok"));
        if i == 10 {
            plan.push((carol, g1.id, text("not a member"), "denied"));
            let to_stranger = NewMessage {
                recipients: Some(vec![carol.id()]),
                ..text("to a stranger")
            };
            plan.push((alice, g1.id, to_stranger, "invalid"));
        }
        if i % 15 == 1 {
            plan.push((alice, g1.id, keyed.clone(), "keyed"));
        }
    }
    // The database stops answering while every send is queued (all of them
    // are, in the first poll of `join_all`): the worker may have taken the
    // first one, and the rest wait for its transaction, so there are at
    // most two batches.
    let proxy = env.db_proxy.as_ref().expect("proxy");
    proxy.pause(true);
    let sends = futures_util::future::join_all(
        plan.iter()
            .map(|(who, conv, m, _)| svc.send_message(who, *conv, m.clone())),
    );
    let (results, ()) = futures_util::future::join(sends, async { proxy.pause(false) }).await;

    let mut keyed_ids = Vec::new();
    let mut fresh_keyed = 0;
    let mut seqs: HashMap<ConversationId, Vec<i64>> = HashMap::new();
    for ((_, conv, m, expect), r) in plan.iter().zip(&results) {
        match (*expect, r) {
            ("ok", Ok(p)) => {
                assert!(p.fresh);
                assert_eq!(p.message.text, m.text);
                seqs.entry(*conv).or_default().push(p.message.seq);
            }
            ("keyed", Ok(p)) => {
                keyed_ids.push(p.message.id);
                if p.fresh {
                    fresh_keyed += 1;
                    seqs.entry(*conv).or_default().push(p.message.seq);
                }
            }
            ("denied", Err(e)) => assert_eq!(e.code, ErrorCode::AccessDenied, "{e:?}"),
            ("invalid", Err(e)) => assert_eq!(e.code, ErrorCode::Invalid, "{e:?}"),
            (want, got) => panic!("{}: wanted {want}, got {got:?}", m.text),
        }
    }
    assert_eq!(fresh_keyed, 1, "one key, one message");
    assert!(keyed_ids.iter().all(|id| *id == keyed_ids[0]));
    // In each conversation the sends took consecutive seqs in queue order.
    for (conv, s) in &seqs {
        let first = s[0];
        let want: Vec<i64> = (first..first + s.len() as i64).collect();
        assert_eq!(s, &want, "seqs of {conv} in the order of sending");
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
        .fetch_one(&env.db)
        .await
        .expect("count");
    let transactions: i64 = sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM messages")
        .fetch_one(&env.db)
        .await
        .expect("transactions");
    assert_eq!(stored, 41, "40 plain sends and one keyed");
    assert!(
        transactions <= 2,
        "committed together: {transactions} transactions"
    );

    // Bob's session receives both conversations' messages once each, in
    // seq order, without a gap to fill from PostgreSQL.
    let mut got: HashMap<ConversationId, Vec<i64>> = HashMap::new();
    while got.values().map(Vec::len).sum::<usize>() < 41 {
        match cb.next_event(WAIT).await {
            Some(Event::MessageCreated {
                conversation_id,
                seq,
                ..
            }) => got.entry(conversation_id).or_default().push(seq),
            Some(_) => {}
            None => panic!("only {got:?} arrived"),
        }
    }
    assert_eq!(got, seqs, "each conversation's messages once, in seq order");
}

/// `commit.linger_ms`: while sends keep coming, a batch waits for the next
/// one; without it, a send that finds the worker idle commits alone.
#[actix_web::test]
async fn with_a_linger_a_send_close_behind_another_commits_with_it() {
    // (linger, transactions for the two sends 30 ms apart)
    for (linger_ms, want) in [(300, 1), (0, 2)] {
        let env = TestEnv::new(|c| {
            c.commit.workers = 1;
            c.commit.linger_ms = linger_ms;
        })
        .await;
        let (actors, _) = people(&env, "linger", &["alice", "bob"]).await;
        let (alice, bob) = (&actors[0], &actors[1]);
        let svc = &env.state.svc;
        let g = svc
            .create_group(alice, "g", vec![bob.id()])
            .await
            .expect("group");
        // The first send finds no batch before it and commits at once.
        svc.send_message(alice, g.id, text("first"))
            .await
            .expect("first send");
        let second = svc.send_message(alice, g.id, text("second"));
        let third = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            svc.send_message(bob, g.id, text("third")).await
        };
        let (second, third) = futures_util::future::join(second, third).await;
        let (second, third) = (second.expect("second send"), third.expect("third send"));
        assert_eq!(third.message.seq, second.message.seq + 1, "in order");
        let transactions: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT xmin::text) FROM messages WHERE text IN ('second', 'third')",
        )
        .fetch_one(&env.db)
        .await
        .expect("transactions");
        assert_eq!(
            transactions, want,
            "linger {linger_ms} ms: the two sends in {transactions} transactions"
        );
    }
}
