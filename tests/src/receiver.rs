//! An HTTP receiver of signed webhooks, started by a test on 127.0.0.1:
//! it records every request and answers as told (`/flaky` fails a set
//! number of times first, `/down` always fails, anything else takes it).

use actix_web::{web, HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub delivery: String,
    pub event: String,
    pub timestamp: String,
    pub signature: String,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub status: u16,
}

#[derive(Default)]
pub struct Receiver {
    pub got: Mutex<Vec<Received>>,
    /// `/flaky` answers 500 this many times first.
    pub flaky_failures: AtomicUsize,
}

impl Receiver {
    pub fn got(&self, path: &str) -> Vec<Received> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, st: web::Data<Arc<Receiver>>) -> HttpResponse {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let path = req.path().to_owned();
    let status = match path.as_str() {
        "/flaky" => {
            let left = st.flaky_failures.load(Ordering::SeqCst);
            if left > 0 {
                st.flaky_failures.store(left - 1, Ordering::SeqCst);
                500
            } else {
                200
            }
        }
        "/down" => 503,
        _ => 204,
    };
    st.got.lock().expect("lock").push(Received {
        path,
        delivery: h("x-parley-delivery"),
        event: h("x-parley-event"),
        timestamp: h("x-parley-timestamp"),
        signature: h("x-parley-signature"),
        body: body.to_vec(),
        status,
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).expect("status"))
        .body("receiver says hi")
}

/// Starts the receiver on 127.0.0.1; its base URL.
pub fn start_receiver(rx: Arc<Receiver>) -> String {
    let data = web::Data::new(rx);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .default_service(web::to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind receiver");
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    format!("http://{addr}")
}

/// What a receiver does: HMAC-SHA256 over `timestamp.body` with the secret.
pub fn signature_ok(secret: &str, r: &Received) -> bool {
    let Some(hex) = r.signature.strip_prefix("v1=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(r.timestamp.as_bytes());
    mac.update(b".");
    mac.update(&r.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == hex
}
