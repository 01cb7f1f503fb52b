//! A real coturn on loopback with the TURN REST scheme (`use-auth-secret`),
//! for call tests that force the relay. Stopped when dropped.

use crate::cluster::free_port;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Coturn {
    child: Child,
    pub port: u16,
    pub secret: String,
    dir: std::path::PathBuf,
}

impl Coturn {
    pub async fn start() -> Coturn {
        let port = free_port();
        let secret = format!("turn-{}", uuid::Uuid::new_v4().simple());
        let dir = std::env::temp_dir().join(format!("parley-coturn-{port}"));
        std::fs::create_dir_all(&dir).expect("coturn dir");
        // Relay ports from a range of their own, above the node ports.
        let min = 32_000 + (port % 100) * 40;
        let bin = ["/usr/bin/turnserver", "/usr/sbin/turnserver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("turnserver");
        let relay = relay_ip();
        let child = Command::new(bin)
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                &format!("--relay-ip={relay}"),
                &format!("--listening-port={port}"),
                &format!("--min-port={min}"),
                &format!("--max-port={}", min + 39),
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--realm=parley.test",
                "--fingerprint",
                // Both browsers and the relay are on loopback here.
                "--allow-loopback-peers",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
                "--log-file=stdout",
                "--simple-log",
                &format!("--pidfile={}", dir.join("turnserver.pid").display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (install coturn; scripts/test.sh does)");
        let c = Coturn {
            child,
            port,
            secret,
            dir,
        };
        // Listening once a UDP probe gets any answer is hard to tell; TCP is
        // opened on the same port.
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "coturn did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        c
    }

    /// The `[calls]` settings that point Parley at this coturn.
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            (
                "PARLEY_CALLS__TURN_URLS".into(),
                format!(
                    "turn:127.0.0.1:{p}?transport=udp,turn:127.0.0.1:{p}?transport=tcp",
                    p = self.port
                ),
            ),
            ("PARLEY_CALLS__TURN_SECRET".into(), self.secret.clone()),
        ]
    }
}

/// The address relays are allocated on: the machine's own address (packets
/// to it stay inside the machine) when it has one, so that a media server
/// that does not take loopback candidates (Janus's libnice) reaches them;
/// else 127.0.0.1.
fn relay_ip() -> String {
    // No packet is sent: connecting a UDP socket only picks a route.
    ["1.1.1.1:9", "192.0.2.1:9"]
        .into_iter()
        .find_map(|to| {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
            s.connect(to).ok()?;
            let ip = s.local_addr().ok()?.ip();
            (!ip.is_unspecified() && !ip.is_loopback()).then(|| ip.to_string())
        })
        .unwrap_or_else(|| "127.0.0.1".into())
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
