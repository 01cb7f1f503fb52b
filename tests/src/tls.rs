//! TLS made by the test: its own certificate authority and a server
//! certificate for `localhost` / 127.0.0.1 signed by it (Debian's `openssl`
//! command), and an HTTPS request that trusts that authority only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct TestCa {
    /// The authority's certificate (PEM), for clients to trust.
    pub ca_pem: PathBuf,
    /// The server's certificate chain and key (PEM), for nginx or a node.
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (install openssl; scripts/test.sh does)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A new authority and server certificate in `dir`.
    pub fn new(dir: &Path) -> TestCa {
        std::fs::create_dir_all(dir).expect("tls dir");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Parley test CA",
        ]);
        openssl(dir, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(dir, &csr);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext file");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
        // The nodes may run as another user than the test (never as root
        // here, but nginx workers read as themselves).
        for f in ["server.pem", "server.key", "ca.pem"] {
            let _ = Command::new("chmod").arg("644").arg(dir.join(f)).status();
        }
        TestCa {
            ca_pem: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        }
    }

    pub fn ca_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.ca_pem).expect("ca.pem")
    }
}

/// An HTTP/1.0 request over TLS to `localhost:port`, trusting `ca_pem`
/// only; the status and the body. None when no answer came.
pub async fn https(
    port: u16,
    ca_pem: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.ok()?).ok()?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let Ok(Ok(tcp)) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        eprintln!("no connection to port {port}");
        return None;
    };
    let name = ServerName::try_from("localhost").ok()?;
    let mut s = match tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("TLS handshake with port {port}: {e}");
            return None;
        }
    };
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.ok()?;
    s.write_all(body).await.ok()?;
    s.flush().await.ok()?;
    let mut buf = Vec::new();
    // A server may end TLS without close_notify after HTTP/1.0: what was
    // read counts.
    if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut buf)).await
    {
        eprintln!(
            "reading the answer from port {port}: {e} (after {} bytes)",
            buf.len()
        );
    }
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        eprintln!(
            "no HTTP answer from port {port}: {:?}",
            String::from_utf8_lossy(&buf)
        );
        return None;
    };
    let head = String::from_utf8_lossy(&buf[..split]);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, buf[split + 4..].to_vec()))
}
