//! A real Janus (Debian `janus`) on loopback with only the VideoRoom plugin
//! and the HTTP transport, rooms created only with the admin key. Stopped
//! when dropped.

use crate::cluster::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Janus {
    child: Child,
    pub port: u16,
    pub admin_key: String,
    dir: std::path::PathBuf,
}

const LIB: &str = "/usr/lib/x86_64-linux-gnu/janus";

impl Janus {
    pub async fn start() -> Janus {
        let port = free_port();
        let admin_key = format!("jk-{}", uuid::Uuid::new_v4().simple());
        let dir = std::env::temp_dir().join(format!("parley-janus-{port}"));
        std::fs::create_dir_all(&dir).expect("janus dir");
        let rtp = 33_000 + (port % 100) * 100;
        let lib = if std::path::Path::new(LIB).exists() {
            LIB.to_owned()
        } else {
            "/usr/lib/janus".to_owned()
        };
        let only = |folder: &str, keep: &str| -> String {
            std::fs::read_dir(format!("{lib}/{folder}"))
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.ends_with(".so") && n != keep)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        let conf = format!(
            r#"general: {{
  configs_folder = "{d}"
  plugins_folder = "{lib}/plugins"
  transports_folder = "{lib}/transports"
  events_folder = "{lib}/events"
  loggers_folder = "{lib}/loggers"
  debug_level = 4
  server_name = "parley-test"
}}
media: {{
  rtp_port_range = "{rtp}-{rtp_end}"
}}
nat: {{
  ice_ignore_list = "vmnet,docker"
}}
plugins: {{
  disable = "{plugins}"
}}
transports: {{
  disable = "{transports}"
}}
events: {{
  broadcast = false
}}
loggers: {{
  disable = "{loggers}"
}}
"#,
            d = dir.display(),
            rtp_end = rtp + 99,
            plugins = only("plugins", "libjanus_videoroom.so"),
            transports = only("transports", "libjanus_http.so"),
            loggers = only("loggers", ""),
        );
        std::fs::write(dir.join("janus.jcfg"), conf).expect("janus.jcfg");
        std::fs::write(
            dir.join("janus.transport.http.jcfg"),
            format!(
                "general: {{\n  http = true\n  port = {port}\n  ip = \"127.0.0.1\"\n  https = false\n  base_path = \"/janus\"\n}}\nadmin: {{\n  admin_http = false\n}}\ncors: {{\n  allow_origin = \"*\"\n}}\n"
            ),
        )
        .expect("http.jcfg");
        std::fs::write(
            dir.join("janus.plugin.videoroom.jcfg"),
            format!("general: {{\n  admin_key = \"{admin_key}\"\n}}\n"),
        )
        .expect("videoroom.jcfg");
        let log = std::fs::File::create(dir.join("janus.log")).expect("log");
        let child = Command::new("janus")
            .args(["-F", &dir.display().to_string(), "-o"])
            .stdout(Stdio::from(log))
            .stderr(Stdio::null())
            .spawn()
            .expect("janus (install janus; scripts/test.sh does)");
        let j = Janus {
            child,
            port,
            admin_key,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "janus did not start: {}",
                j.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        j
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/janus", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("janus.log")).unwrap_or_default()
    }

    /// The `[calls]` settings that point Parley at this Janus.
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("PARLEY_CALLS__JANUS_URLS".into(), self.url()),
            (
                "PARLEY_CALLS__JANUS_ADMIN_KEY".into(),
                self.admin_key.clone(),
            ),
        ]
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- janus, last lines:");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
