//! Lean WebSocket connections (the full client would be the bottleneck):
//! connect from a chosen 127.0.0.x source, wait for `ready`, then a reader
//! task and a writer channel.

use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// tungstenite's default read buffer is 128 KiB and is zero-filled before
/// every read: with thousands of sessions each receiving small frames, the
/// bench client spent half its CPU in `memset` (a quarter of the shared
/// machine). Frames here are a few hundred bytes; larger ones still arrive
/// (the buffer grows as needed).
fn config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER)
}

const READ_BUFFER: usize = 4096;

fn host(url: &str) -> Result<&str, String> {
    let rest = url.strip_prefix("ws://").ok_or("ws:// URL expected")?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

/// Local ports given to connections from a chosen source address: below
/// the kernel's ephemeral range on purpose. A socket bound with port 0
/// takes its port from the ephemeral range, and that range is shared by
/// every address: thousands of bound sessions (and their TIME_WAIT after a
/// run) would leave no port for anyone's plain connect, PostgreSQL's
/// clients included, for a minute.
const SOURCE_PORTS: std::ops::Range<u32> = 10_000..32_000;
static NEXT_SOURCE_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A TCP connection to the URL's host from `source`.
async fn tcp(url: &str, source: Option<IpAddr>) -> Result<tokio::net::TcpStream, String> {
    let host = host(url)?;
    let addr: SocketAddr = host.parse().map_err(|e| format!("{host}: {e}"))?;
    let Some(ip) = source else {
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        return connected(sock, addr).await;
    };
    let span = SOURCE_PORTS.end - SOURCE_PORTS.start;
    let mut last = String::new();
    for _ in 0..64 {
        let n = NEXT_SOURCE_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = (SOURCE_PORTS.start + n % span) as u16;
        let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
        // A port left in TIME_WAIT by an earlier run may be bound again.
        sock.set_reuseaddr(true).map_err(|e| e.to_string())?;
        if let Err(e) = sock.bind(SocketAddr::new(ip, port)) {
            last = format!("bind {ip}:{port}: {e}");
            continue;
        }
        match connected(sock, addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn connected(
    sock: tokio::net::TcpSocket,
    addr: SocketAddr,
) -> Result<tokio::net::TcpStream, String> {
    let stream = sock
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Opens an authenticated session.
pub async fn open(url: &str, token: &str, source: Option<IpAddr>) -> Result<Ws, String> {
    let stream = tcp(url, source).await?;
    let mut req = url.into_client_request().map_err(|e| e.to_string())?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .map_err(|_| "bad token".to_string())?,
    );
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.contains("\"type\":\"ready\"") => return Ok(ws),
            Some(Ok(Message::Text(t))) => return Err(format!("refused: {t}")),
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed before ready".into()),
        }
    }
}

/// Opens a socket.io (engine.io v4, WebSocket transport) session on the
/// peer, joining `rooms`.
pub async fn open_peer(
    base: &str,
    user: &str,
    rooms: &[String],
    source: Option<IpAddr>,
) -> Result<Ws, String> {
    let stream = tcp(base, source).await?;
    let host = host(base)?;
    let url = format!("ws://{host}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(url.as_str(), stream, Some(config()))
            .await
            .map_err(|e| e.to_string())?;
    let auth = serde_json::json!({ "user": user, "rooms": rooms });
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3"))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Some(Ok(Message::Text(t))) if t.starts_with("40") => return Ok(ws),
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {
                ws.send(Message::text(format!("40{auth}")))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Some(Ok(Message::Text(t))) => return Err(format!("peer refused: {t}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("peer closed before connect".into()),
        }
    }
}

/// Splits a session into a writer (frames to send) and a stream of text
/// frames received, each handled by `on_text` in the reader task.
pub fn run(
    ws: Ws,
    mut on_text: impl FnMut(&str) + Send + 'static,
) -> mpsc::UnboundedSender<String> {
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    // Engine.io pings ("2") are answered ("3").
    let pong = tx.clone();
    tokio::spawn(async move {
        while let Some(t) = rx.recv().await {
            if sink.send(Message::text(t)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Text(t) = msg {
                if t.as_str() == "2" {
                    let _ = pong.send("3".into());
                } else {
                    on_text(&t);
                }
            }
        }
    });
    tx
}
