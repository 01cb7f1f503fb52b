//! Full-text search: Russian and English word forms, ranking, snippets,
//! filters, paging, and only what the caller may read.

use crate::*;
use parley_core::protocol::{SearchPage, SearchQuery};

async fn search(c: &Client, q: SearchQuery) -> SearchPage {
    c.call(Request::Search { query: q }).await.expect("search")
}

fn q(text: &str) -> SearchQuery {
    SearchQuery {
        query: text.into(),
        ..Default::default()
    }
}

#[actix_web::test]
async fn search_finds_word_forms_in_both_languages_and_only_what_one_may_read() {
    let p = pair().await;
    let app = p.env.app().await;
    let g = group(&p.ca, "accounting", &[p.bob]).await;
    let m1 = send(&p.ca, g.id, text("Выставлен счёт на оплату поставки")).await;
    let m2 = send(&p.cb, g.id, text("The invoice was approved by finance")).await;
    send(&p.ca, g.id, text("unrelated chatter")).await;
    // For Alice only.
    let secret = send(
        &p.ca,
        g.id,
        NewMessage {
            text: "счета для Алисы".into(),
            recipients: Some(vec![p.alice]),
            ..Default::default()
        },
    )
    .await;
    // A conversation Bob is not in.
    let carol = user(&app, &p.a, "carol").await;
    let other = group(&p.ca, "private", &[uid(&carol)]).await;
    let hidden = send(&p.ca, other.id, text("счета закрыты")).await;

    // Another word form, ё folded: "счета" finds "счёт".
    let r = search(&p.cb, q("счета")).await;
    let ids: Vec<_> = r.hits.iter().map(|h| h.message.id).collect();
    assert_eq!(ids, vec![m1.id], "{r:?}");
    let hit = &r.hits[0];
    let [s, e] = hit.highlights[0];
    let marked: String = hit.snippet.chars().skip(s).take(e - s).collect();
    assert_eq!(marked.to_lowercase(), "счет", "{hit:?}");
    // English stems: "approve" finds "approved"; "invoices" finds "invoice".
    assert_eq!(search(&p.cb, q("approve")).await.hits[0].message.id, m2.id);
    assert_eq!(search(&p.ca, q("invoices")).await.hits[0].message.id, m2.id);
    // Alice sees her own addressed message and the other conversation.
    let mine: Vec<_> = search(&p.ca, q("счет"))
        .await
        .hits
        .iter()
        .map(|h| h.message.id)
        .collect();
    for id in [m1.id, secret.id, hidden.id] {
        assert!(mine.contains(&id), "{mine:?}");
    }
    // Bob never sees the one addressed to Alice nor the conversation he is
    // not in, even when he names it.
    let his: Vec<_> = search(&p.cb, q("счета"))
        .await
        .hits
        .iter()
        .map(|h| h.message.id)
        .collect();
    assert!(
        !his.contains(&secret.id) && !his.contains(&hidden.id),
        "{his:?}"
    );
    let named = search(
        &p.cb,
        SearchQuery {
            conversation_id: Some(other.id),
            ..q("счета")
        },
    )
    .await;
    assert!(named.hits.is_empty(), "{named:?}");
    // Filters: author.
    let by_bob = search(
        &p.ca,
        SearchQuery {
            author_id: Some(p.bob),
            ..q("invoice | счет")
        },
    )
    .await;
    assert!(
        by_bob.hits.iter().all(|h| h.message.author_id == p.bob),
        "{by_bob:?}"
    );

    // Edits and deletions are reflected at once.
    p.ca.call::<Value>(Request::Edit {
        conversation_id: g.id,
        message_id: m1.id,
        text: Some("Оплата поставки".into()),
        data: None,
    })
    .await
    .expect("edit");
    assert!(search(&p.cb, q("счёт")).await.hits.is_empty());
    p.cb.call::<Value>(Request::Delete {
        conversation_id: g.id,
        message_id: m2.id,
    })
    .await
    .expect("delete");
    assert!(search(&p.ca, q("approve")).await.hits.is_empty());

    // The infobase over REST: its own conversations whole; B (Bob's
    // infobase) only what Bob may read.
    let r = call(
        &app,
        "GET",
        &format!(
            "/v1/infobases/{}/search?query=%D1%81%D1%87%D0%B5%D1%82%D0%B0",
            p.b.id
        ),
        &p.b.auth(),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let rest: Vec<&str> = r.body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .filter_map(|h| h["message"]["id"].as_str())
        .collect();
    assert!(
        !rest.contains(&secret.id.to_string().as_str())
            && !rest.contains(&hidden.id.to_string().as_str()),
        "{rest:?}"
    );
    // Bad input.
    let e =
        p.ca.request(Request::Search { query: q("") })
            .await
            .expect_err("empty");
    assert_eq!(e.code(), Some(ErrorCode::Invalid));
}

#[actix_web::test]
async fn search_pages_with_a_cursor() {
    let p = pair().await;
    let g = group(&p.ca, "many", &[p.bob]).await;
    for i in 0..7 {
        send(&p.ca, g.id, text(&format!("отчёт номер {i}"))).await;
    }
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    loop {
        let page = search(
            &p.cb,
            SearchQuery {
                limit: Some(3),
                cursor: cursor.clone(),
                ..q("отчеты")
            },
        )
        .await;
        for h in &page.hits {
            assert!(seen.insert(h.message.id), "a hit came twice");
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 7);
}

/// The people directory: name or full name contains the query, case- and
/// ё-insensitive, only the caller's subscriber, locked users hidden, paged.
#[actix_web::test]
async fn the_people_directory_finds_colleagues_only() {
    use parley_core::protocol::UserProfiles;
    let p = pair().await;
    let app = p.env.app().await;
    for (ext, name) in [
        ("f1", "Фёдор Петров"),
        ("f2", "федор Сидоров"),
        ("f3", "Fedora_100%"),
    ] {
        let r = call(
            &app,
            "POST",
            &format!("/v1/infobases/{}/users", p.a.id),
            &p.a.auth(),
            json_body(json!({"external_id": ext, "name": name})),
        )
        .await;
        assert!(r.status.is_success(), "{r:?}");
    }
    // Locked, and another subscriber's: never listed.
    call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/users", p.a.id),
        &p.a.auth(),
        json_body(json!({"external_id": "f4", "name": "Федор Закрытый", "locked": true})),
    )
    .await;
    let e_ib = register(&app, &email("dir-eve"), "Eve").await;
    call(
        &app,
        "POST",
        &format!("/v1/infobases/{}/users", e_ib.id),
        &e_ib.auth(),
        json_body(json!({"external_id": "x", "name": "Федор Чужой"})),
    )
    .await;
    let find = |q: &str, cursor: Option<String>, limit: Option<u32>| {
        let c = p.cb.clone();
        let q = q.to_owned();
        async move {
            let r: UserProfiles = c
                .call(Request::SearchUsers {
                    query: q,
                    cursor,
                    limit,
                })
                .await
                .expect("users.search");
            r
        }
    };
    let names: Vec<String> = find("ФЁДОР", None, None)
        .await
        .users
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, vec!["Фёдор Петров", "федор Сидоров"], "{names:?}");
    // LIKE's wildcards are plain characters.
    assert_eq!(find("_100%", None, None).await.users.len(), 1);
    assert!(find("%", None, None).await.users.len() <= 1);
    // Paged.
    let first = find("д", None, Some(1)).await;
    assert_eq!(first.users.len(), 1);
    let second = find("д", first.next_cursor.clone(), Some(1)).await;
    assert_eq!(second.users.len(), 1);
    assert_ne!(first.users[0].id, second.users[0].id);
}
