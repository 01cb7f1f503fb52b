//! Full-text search at scale: a million generated messages in Russian and
//! English (imported through the store, as a migration would), each user a
//! member of 100 conversations; then `search` requests over WebSocket to one
//! node, one at a time, and their latency (p50/p95) by kind of query.

use crate::report::Res;
use crate::Env;
use hdrhistogram::Histogram;
use parley_client::{Client, Options};
use parley_core::protocol::{Request, SearchPage, SearchQuery};
use parley_store::ImportedMessage;
use serde_json::json;
use std::time::{Duration, Instant};

/// Words of the generated messages: each a group of forms of one word, so
/// that a query can use another form than the text (Russian and English
/// stemming must meet them).
const WORDS: &[&[&str]] = &[
    &["счёт", "счета", "счетов", "счету"],
    &["договор", "договора", "договоры", "договором"],
    &["оплата", "оплаты", "оплату", "оплатой"],
    &["поставка", "поставки", "поставку", "поставок"],
    &["накладная", "накладной", "накладные", "накладных"],
    &["заказ", "заказа", "заказы", "заказов"],
    &["клиент", "клиента", "клиенты", "клиентов"],
    &["склад", "склада", "складе", "складов"],
    &["отгрузка", "отгрузки", "отгрузку", "отгрузок"],
    &["платёж", "платежа", "платежи", "платежей"],
    &["согласование", "согласования", "согласовать", "согласовали"],
    &["бюджет", "бюджета", "бюджеты", "бюджетов"],
    &["акт", "акта", "акты", "актов"],
    &["скидка", "скидки", "скидку", "скидок"],
    &["возврат", "возврата", "возвраты", "возвратов"],
    &["invoice", "invoices", "invoiced", "invoicing"],
    &["approve", "approved", "approves", "approving"],
    &["delivery", "deliveries", "delivered", "delivering"],
    &["order", "orders", "ordered", "ordering"],
    &["payment", "payments", "paid", "paying"],
    &["shipment", "shipments", "shipped", "shipping"],
    &["contract", "contracts", "contracted", "contracting"],
    &["customer", "customers", "customer's", "customers'"],
    &["warehouse", "warehouses", "warehoused", "warehousing"],
    &["discount", "discounts", "discounted", "discounting"],
];

/// Filler that every language has (stop words and small talk).
const FILLER: &[&str] = &[
    "please",
    "check",
    "today",
    "the",
    "and",
    "for",
    "пожалуйста",
    "проверьте",
    "сегодня",
    "и",
    "по",
    "для",
    "срочно",
    "asap",
    "thanks",
    "спасибо",
];

/// A small deterministic generator (no extra crate for one scenario).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Skewed towards the first words, as real vocabularies are.
    fn zipf(&mut self, n: usize) -> usize {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }
}

fn message_text(rng: &mut Rng) -> String {
    let mut words = Vec::with_capacity(10);
    for _ in 0..3 + rng.below(3) {
        let w = WORDS[rng.zipf(WORDS.len())];
        words.push(w[rng.below(w.len())].to_owned());
    }
    for _ in 0..2 + rng.below(4) {
        words.push(FILLER[rng.below(FILLER.len())].to_owned());
    }
    words.push(format!("№{}", 10_000 + rng.below(90_000)));
    // Shuffle a little so the words are not in a fixed order.
    for i in (1..words.len()).rev() {
        words.swap(i, rng.below(i + 1));
    }
    words.join(" ")
}

/// The kinds of queries, as people type them.
fn query(rng: &mut Rng, kind: usize) -> String {
    let form = |rng: &mut Rng| {
        let w = WORDS[rng.zipf(WORDS.len())];
        w[rng.below(w.len())].to_owned()
    };
    match kind {
        // One word, in whichever form.
        0 => form(rng),
        // Two words.
        1 => format!("{} {}", form(rng), form(rng)),
        // A document number.
        _ => format!("№{}", 10_000 + rng.below(90_000)),
    }
}

const KINDS: [&str; 3] = ["one_word", "two_words", "number"];

impl Env {
    pub(crate) async fn search_bench(
        &mut self,
        messages: usize,
        per_user: usize,
        queries: usize,
    ) -> Res<()> {
        self.db.fresh().await?;
        let fx = self.fixture().await?;
        // 2 × per_user users and conversations of per_user members each:
        // user i is in conversations i … i + per_user − 1 (wrapping), so
        // every user reads exactly `per_user` of them (half the messages).
        let n = 2 * per_user;
        let users = fx.users(n, "search").await?;
        let mut convs = Vec::with_capacity(n);
        for c in 0..n {
            let members: Vec<_> = (0..per_user).map(|k| users[(c + n - k) % n].0).collect();
            convs.push(fx.group(&members, per_user + 1).await?);
        }
        let per_conv = messages.div_ceil(n);
        let loaded = Instant::now();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let start = chrono::Utc::now() - chrono::Duration::days(365);
        for (c, conv) in convs.iter().enumerate() {
            for chunk in (0..per_conv).collect::<Vec<_>>().chunks(2000) {
                let batch: Vec<ImportedMessage> = chunk
                    .iter()
                    .map(|&i| ImportedMessage {
                        author: users[(c + n - rng.below(per_user)) % n].0,
                        text: message_text(&mut rng),
                        created_at: start
                            + chrono::Duration::seconds(
                                ((i * n + c) * 31_536_000 / (per_conv * n)) as i64,
                            ),
                    })
                    .collect();
                fx.store
                    .import_messages(*conv, &batch)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        fx.store
            .analyze_messages()
            .await
            .map_err(|e| e.to_string())?;
        let load_s = loaded.elapsed().as_secs_f64();
        eprintln!(
            "  search: {} messages imported in {load_s:.0} s",
            per_conv * n
        );
        let nodes = self.start(1, 1000, false)?;
        let url = nodes.urls()[0].clone();
        let mut clients = Vec::new();
        for (_, token) in users.iter().take(8) {
            let c = Client::connect(Options::new(url.clone(), token.clone()))
                .await
                .map_err(|e| format!("connect: {e}"))?;
            clients.push(c);
        }
        let mut all = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
        let mut by_kind: Vec<Histogram<u64>> = (0..KINDS.len())
            .map(|_| Histogram::new(3))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        let mut hits = 0usize;
        // A few warm-up queries (plans, caches) that are not counted.
        for i in 0..queries + 20 {
            let kind = i % KINDS.len();
            let q = query(&mut rng, kind);
            let c = &clients[i % clients.len()];
            let t = Instant::now();
            let page: SearchPage = c
                .call(Request::Search {
                    query: SearchQuery {
                        query: q.clone(),
                        conversation_id: None,
                        author_id: None,
                        from: None,
                        to: None,
                        cursor: None,
                        limit: Some(20),
                    },
                })
                .await
                .map_err(|e| format!("search {q}: {e}"))?;
            let us = t.elapsed().as_micros() as u64;
            if i < 20 {
                continue;
            }
            hits += page.hits.len();
            all.record(us.max(1)).map_err(|e| e.to_string())?;
            by_kind[kind].record(us.max(1)).map_err(|e| e.to_string())?;
        }
        drop(clients);
        drop(nodes);
        let ms =
            |h: &Histogram<u64>, q: f64| (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0;
        let kinds: serde_json::Map<String, serde_json::Value> = KINDS
            .iter()
            .zip(&by_kind)
            .map(|(k, h)| {
                (
                    (*k).to_owned(),
                    json!({"p50_ms": ms(h, 0.5), "p95_ms": ms(h, 0.95)}),
                )
            })
            .collect();
        self.report.add(
            &self.cli.out,
            "search",
            "parley",
            1,
            json!({"messages": per_conv * n, "conversations_per_user": per_user, "users": n,
                   "queries": queries}),
            json!({"p50_ms": ms(&all, 0.5), "p95_ms": ms(&all, 0.95), "max_ms": ms(&all, 1.0),
                   "hits_per_query": hits as f64 / queries as f64, "kinds": kinds,
                   "import_s": load_s.round()}),
        )?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    }
}
