//! Outgoing HTTP requests to addresses that users typed: webhook endpoints
//! of infobases (and push services). A user-given URL must not turn Parley
//! into a way of reaching its own network, so every address a name resolves
//! to is checked when the request is made (not only when the URL was
//! registered: a name may be re-pointed), and the connection goes to the
//! address that was checked.

pub mod webpush;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;

/// The most of a response body read (receivers' answers are only logged).
const MAX_RESPONSE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("url: {0}")]
    BadUrl(String),
    #[error("{host} resolves to {addr}, a private, loopback or otherwise non-public address")]
    PrivateTarget { host: String, addr: IpAddr },
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("http: {0}")]
    Http(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An answer: its status and the start of its body.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    tls: tokio_rustls::TlsConnector,
    allow_private: bool,
    timeout: Duration,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("allow_private", &self.allow_private)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A parsed target: what to resolve and what to ask for.
#[derive(Clone, Debug)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Checks the form of a URL: `http(s)://host[:port]/path`, no user info.
pub fn parse_target(url: &str) -> Result<Target, OutboundError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| OutboundError::BadUrl(format!("not a URL ({e})")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(OutboundError::BadUrl(
                "must start with https:// or http://".into(),
            ))
        }
    };
    let auth = uri
        .authority()
        .ok_or_else(|| OutboundError::BadUrl("no host".into()))?;
    if auth.as_str().contains('@') {
        return Err(OutboundError::BadUrl("user info is not allowed".into()));
    }
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(OutboundError::BadUrl("no host".into()));
    }
    let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    Ok(Target {
        https,
        host: host.to_owned(),
        port,
        path,
    })
}

/// Whether an address is one anyone on the internet could reach (not
/// loopback, private, link-local, carrier-grade NAT, multicast, …).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0xdb8)) // documentation
        }
    }
}

impl Outbound {
    /// `allow_private`: private and loopback targets are allowed (a test,
    /// or receivers inside the company network on purpose).
    pub fn new(allow_private: bool, timeout: Duration) -> Result<Self, OutboundError> {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| OutboundError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            allow_private,
            timeout,
        })
    }

    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// Resolves the target's host and refuses it when any address it has is
    /// not public (unless private targets are allowed); the addresses to use.
    pub async fn resolve(&self, t: &Target) -> Result<Vec<SocketAddr>, OutboundError> {
        let addrs: Vec<SocketAddr> = match t.host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, t.port)],
            Err(_) => tokio::time::timeout(
                self.timeout,
                tokio::net::lookup_host((t.host.as_str(), t.port)),
            )
            .await
            .map_err(|_| OutboundError::Timeout(self.timeout))?
            .map_err(|_| OutboundError::Resolve(t.host.clone()))?
            .collect(),
        };
        if addrs.is_empty() {
            return Err(OutboundError::Resolve(t.host.clone()));
        }
        if !self.allow_private {
            if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(OutboundError::PrivateTarget {
                    host: t.host.clone(),
                    addr: a.ip(),
                });
            }
        }
        Ok(addrs)
    }

    /// POSTs a JSON `body` to `url` with the headers given (plus Host,
    /// Content-Length and Content-Type); the whole exchange within the
    /// client's timeout.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, OutboundError> {
        self.post(url, "application/json", headers, body).await
    }

    /// POSTs `body` of `content_type` to `url` (as [`Outbound::post_json`]).
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, OutboundError> {
        let t = parse_target(url)?;
        tokio::time::timeout(self.timeout, self.exchange(&t, content_type, headers, body))
            .await
            .map_err(|_| OutboundError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        t: &Target,
        content_type: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<Answer, OutboundError> {
        let addrs = self.resolve(t).await?;
        let mut last = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = stream.ok_or_else(|| {
            OutboundError::Connect(last.map(|e| e.to_string()).unwrap_or_default())
        })?;
        let _ = stream.set_nodelay(true);
        let host_header = if (t.https && t.port == 443) || (!t.https && t.port == 80) {
            t.host.clone()
        } else {
            format!("{}:{}", t.host, t.port)
        };
        let mut req = hyper::Request::post(t.path.as_str())
            .header(hyper::header::HOST, host_header)
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::USER_AGENT, "Parley/1")
            .header(hyper::header::CONTENT_LENGTH, body.len());
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| OutboundError::Http(e.to_string()))?;
        if t.https {
            let name = rustls::pki_types::ServerName::try_from(t.host.clone())
                .map_err(|e| OutboundError::Tls(e.to_string()))?;
            let tls = self
                .tls
                .connect(name, stream)
                .await
                .map_err(|e| OutboundError::Tls(e.to_string()))?;
            send(TokioIo::new(tls), req).await
        } else {
            send(TokioIo::new(stream), req).await
        }
    }
}

async fn send<IO>(io: IO, req: hyper::Request<Full<Bytes>>) -> Result<Answer, OutboundError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| OutboundError::Http(e.to_string()))?;
    let conn = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "outbound connection ended");
        }
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| OutboundError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    // The body is only for the log: what fits is kept, the rest dropped.
    let body = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    conn.abort();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = a.parse().expect("address");
            assert!(!is_public(ip), "{a} must not be public");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700::1111"] {
            let ip: IpAddr = a.parse().expect("address");
            assert!(is_public(ip), "{a} is public");
        }
    }

    #[test]
    fn urls_are_checked_for_form() {
        let t = parse_target("https://erp.example.com/parley/hook?x=1").expect("valid");
        assert!(t.https && t.host == "erp.example.com" && t.port == 443);
        assert_eq!(t.path, "/parley/hook?x=1");
        let t = parse_target("http://[::1]:8080/").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        for bad in [
            "ftp://x/",
            "erp.example.com/hook",
            "https://user:pw@x/",
            "https:///x",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} must be refused");
        }
    }

    #[tokio::test]
    async fn loopback_is_refused_unless_allowed() {
        let t = parse_target("http://localhost:9/").expect("valid");
        let strict = Outbound::new(false, Duration::from_secs(5)).expect("client");
        assert!(matches!(
            strict.resolve(&t).await,
            Err(OutboundError::PrivateTarget { .. })
        ));
        let open = Outbound::new(true, Duration::from_secs(5)).expect("client");
        assert!(open.resolve(&t).await.is_ok());
    }
}
