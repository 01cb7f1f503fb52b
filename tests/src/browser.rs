//! Headless Chromium driven over the DevTools protocol (a WebSocket we
//! already speak), for end-to-end tests of the web client.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Browser {
    child: Child,
    dir: PathBuf,
    tx: mpsc::UnboundedSender<String>,
    pending: Pending,
    next: Arc<Mutex<u64>>,
    /// Console errors and uncaught exceptions, per session.
    pub errors: Arc<Mutex<HashMap<String, Vec<String>>>>,
    /// URLs of the WebSockets each session opened.
    pub sockets: Arc<Mutex<HashMap<String, Vec<String>>>>,
}

/// One tab.
pub struct Tab<'a> {
    browser: &'a Browser,
    session: String,
}

fn chromium() -> String {
    for c in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(c).exists() {
            return c.into();
        }
    }
    "chromium".into()
}

impl Browser {
    pub async fn launch() -> Browser {
        Self::launch_with(&[]).await
    }

    /// A browser with extra command-line switches (e.g. `--lang=ru`).
    pub async fn launch_with(extra: &[&str]) -> Browser {
        let dir =
            std::env::temp_dir().join(format!("parley-chromium-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("profile dir");
        let mut child = Command::new(chromium())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
                // Calls: a fake camera and microphone, no permission prompt,
                // and a fake screen for getDisplayMedia.
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--auto-select-desktop-capture-source=Entire screen",
                "--autoplay-policy=no-user-gesture-required",
            ])
            .args(extra)
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium (install chromium; scripts/test.sh does)");
        let stderr = child.stderr.take().expect("stderr");
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(u) = line.split("DevTools listening on ").nth(1) {
                    let _ = url_tx.send(u.trim().to_owned());
                }
            }
        });
        let url = url_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium DevTools URL");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("DevTools socket");
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if sink.send(Message::text(m)).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let errors: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let sockets: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let (p2, e2, s2) = (pending.clone(), errors.clone(), sockets.clone());
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(t))) = stream.next().await {
                let Ok(v) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                if let Some(id) = v["id"].as_u64() {
                    if let Some(tx) = p2.lock().ok().and_then(|mut p| p.remove(&id)) {
                        let _ = tx.send(v);
                    }
                    continue;
                }
                let session = v["sessionId"].as_str().unwrap_or("").to_owned();
                if v["method"] == "Network.webSocketCreated" {
                    if let (Some(url), Ok(mut s)) = (v["params"]["url"].as_str(), s2.lock()) {
                        s.entry(session.clone()).or_default().push(url.to_owned());
                    }
                    continue;
                }
                let problem = match v["method"].as_str() {
                    Some("Runtime.exceptionThrown") => {
                        Some(v["params"]["exceptionDetails"].to_string())
                    }
                    Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => {
                        Some(v["params"]["args"].to_string())
                    }
                    _ => None,
                };
                if let Some(p) = problem {
                    if let Ok(mut e) = e2.lock() {
                        e.entry(session).or_default().push(p);
                    }
                }
            }
        });
        Browser {
            child,
            dir,
            tx,
            pending,
            next: Arc::new(Mutex::new(1)),
            errors,
            sockets,
        }
    }

    async fn send(&self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = {
            let mut n = self.next.lock().expect("lock");
            *n += 1;
            *n
        };
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("lock").insert(id, tx);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.tx.send(msg.to_string()).expect("DevTools writer");
        let v = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("DevTools answer in time")
            .expect("answer");
        assert!(v.get("error").is_none(), "{method}: {v}");
        v["result"].clone()
    }

    /// A new tab showing `url`.
    pub async fn tab(&self, url: &str) -> Tab<'_> {
        self.tab_with(url, None).await
    }

    /// Lets pages of `origin` use these permissions (`notifications`, …)
    /// without asking.
    pub async fn grant(&self, origin: &str, permissions: &[&str]) {
        self.send(
            None,
            "Browser.grantPermissions",
            json!({"origin": origin, "permissions": permissions}),
        )
        .await;
    }

    /// A new tab showing `url`, with `init` run in every document before
    /// the page's own scripts.
    pub async fn tab_with(&self, url: &str, init: Option<&str>) -> Tab<'_> {
        let t = self
            .send(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target = t["targetId"].as_str().expect("target").to_owned();
        let a = self
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await;
        let session = a["sessionId"].as_str().expect("session").to_owned();
        let tab = Tab {
            browser: self,
            session,
        };
        tab.cmd("Runtime.enable", json!({})).await;
        tab.cmd("Page.enable", json!({})).await;
        tab.cmd("Network.enable", json!({})).await;
        if let Some(js) = init {
            tab.cmd(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({"source": js}),
            )
            .await;
        }
        tab.goto(url).await;
        tab
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Tab<'_> {
    pub async fn cmd(&self, method: &str, params: Value) -> Value {
        self.browser.send(Some(&self.session), method, params).await
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("Page.navigate", json!({"url": url})).await;
    }

    /// Evaluates JavaScript (promises awaited) and returns its value.
    pub async fn eval(&self, js: &str) -> Value {
        let r = self
            .cmd(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// As [`Tab::eval`], as if the user had just clicked (APIs such as
    /// `getDisplayMedia` need that).
    pub async fn eval_as_user(&self, js: &str) -> Value {
        let r = self
            .cmd(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true, "userGesture": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{js}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `js` is true.
    pub async fn wait(&self, what: &str, js: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = self
                .cmd(
                    "Runtime.evaluate",
                    json!({"expression": js, "returnByValue": true}),
                )
                .await;
            if r["result"]["value"] == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Puts a file into an `<input type=file>` found by `selector`.
    pub async fn set_file(&self, selector: &str, path: &std::path::Path) {
        let r = self
            .cmd(
                "Runtime.evaluate",
                json!({"expression": format!("document.querySelector('{selector}')")}),
            )
            .await;
        let object = r["result"]["objectId"]
            .as_str()
            .expect("file input")
            .to_owned();
        self.cmd(
            "DOM.setFileInputFiles",
            json!({"files": [path.display().to_string()], "objectId": object}),
        )
        .await;
    }

    /// Saves a PNG of the tab at `width` CSS pixels wide.
    pub async fn screenshot(&self, name: &str, width: u32) -> PathBuf {
        self.cmd(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shot = self
            .cmd("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("png"))
            .expect("base64");
        let dir = std::env::var("PARLEY_ARTIFACTS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| std::env::temp_dir().join("parley-artifacts"));
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot");
        self.cmd("Emulation.clearDeviceMetricsOverride", json!({}))
            .await;
        path
    }

    /// URLs of the WebSockets this tab opened.
    pub fn websocket_urls(&self) -> Vec<String> {
        self.browser
            .sockets
            .lock()
            .map(|s| s.get(&self.session).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Console errors and uncaught exceptions seen in this tab.
    pub fn errors(&self) -> Vec<String> {
        self.browser
            .errors
            .lock()
            .map(|e| e.get(&self.session).cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}
