//! The Web Push service of the tests (tests/push_receiver.py, Python with
//! the `http_ece` library): subscriptions made there, pushes verified and
//! decrypted there, independently of Parley's code.

use crate::cluster::http_json;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct PushService {
    child: Child,
    pub port: u16,
}

impl PushService {
    /// Starts the receiver with `PARLEY_TEST_PUSH_PYTHON` (or `python3`)
    /// and `PARLEY_TEST_PUSH_PYTHONPATH` where `http_ece` is installed
    /// (scripts/test.sh installs it there).
    pub fn start() -> PushService {
        let python =
            std::env::var("PARLEY_TEST_PUSH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("push_receiver.py");
        let mut cmd = Command::new(&python);
        if let Ok(path) = std::env::var("PARLEY_TEST_PUSH_PYTHONPATH") {
            cmd.env("PYTHONPATH", path);
        }
        let mut child = cmd
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {python} {}: {e}", script.display()));
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out)
            .read_line(&mut line)
            .expect("the receiver says its port");
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "push receiver did not start (is http_ece installed for {python}?): {line:?}"
                )
            });
        PushService { child, port }
    }

    /// A new subscription (`{"id", "endpoint", "keys"}`); `gone`: its
    /// pushes answer 410.
    pub async fn subscription(&self, gone: bool) -> Value {
        let path = if gone { "/new?gone=1" } else { "/new" };
        let (status, v) = http_json(self.port, "GET", path, None, None)
            .await
            .expect("receiver answers");
        assert_eq!(status, 200);
        v
    }

    /// Every push received so far.
    pub async fn received(&self) -> Vec<Value> {
        let (_, v) = http_json(self.port, "GET", "/received", None, None)
            .await
            .expect("receiver answers");
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
