//! The HTTP server: actix-web's application for requests, and WebSocket
//! upgrades taken out of actix-http's connection handling
//! ([`crate::ws::upgrade`]) so that an idle session does not keep its
//! 16 KiB of HTTP buffers. `parley serve` and the tests start it the same
//! way.

use crate::state::AppState;
use crate::ws;
use actix_codec::Framed;
use actix_http::body::BoxBody;
use actix_http::{h1, HttpServiceBuilder, Request, Response};
use actix_server::{Server, ServerBuilder};
use actix_service::{fn_service, map_config, Service, ServiceFactory};
use actix_web::dev::AppConfig;
use actix_web::web;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::time::Duration;

/// How the server listens.
pub struct ServerOptions {
    /// `host:port`; every address it resolves to is bound.
    pub bind: String,
    /// Worker threads; 0 = one per core.
    pub workers: usize,
    /// Longest wait for a request's head (`http.request_timeout_secs`).
    pub request_timeout: Duration,
    /// Longest wait for in-flight requests when stopping.
    pub shutdown_timeout: Duration,
    /// Pending connections the kernel queues per listener.
    pub backlog: u32,
    /// TLS on every listener when set.
    pub tls: Option<rustls::ServerConfig>,
}

/// A server ready to run, and the addresses it listens on.
pub struct Bound {
    pub server: Server,
    pub addrs: Vec<SocketAddr>,
}

/// Binds and builds the server (signals are the caller's business).
pub fn start(state: web::Data<AppState>, opts: ServerOptions) -> std::io::Result<Bound> {
    let mut builder = Server::build()
        .disable_signals()
        .backlog(opts.backlog)
        .shutdown_timeout(opts.shutdown_timeout.as_secs());
    if opts.workers > 0 {
        builder = builder.workers(opts.workers);
    }
    let mut addrs = Vec::new();
    for addr in opts.bind.to_socket_addrs()? {
        let listener = listen(addr, opts.backlog)?;
        let addr = listener.local_addr()?;
        addrs.push(addr);
        builder = serve(builder, listener, addr, &state, &opts)?;
    }
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} resolves to no address", opts.bind),
        ));
    }
    Ok(Bound {
        server: builder.run(),
        addrs,
    })
}

fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)?.into_std()
}

fn serve(
    builder: ServerBuilder,
    listener: TcpListener,
    addr: SocketAddr,
    st: &web::Data<AppState>,
    opts: &ServerOptions,
) -> std::io::Result<ServerBuilder> {
    let st = web::Data::clone(st);
    let request_timeout = opts.request_timeout;
    let name = format!("parley-{addr}");
    match opts.tls.clone() {
        None => builder.listen(name, listener, move || {
            let app = crate::app(web::Data::clone(&st));
            builder_for(request_timeout, addr)
                .upgrade(upgrades(web::Data::clone(&st)))
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        }),
        Some(tls) => builder.listen(name, listener, move || {
            let app = crate::app(web::Data::clone(&st));
            builder_for(request_timeout, addr)
                .upgrade(upgrades(web::Data::clone(&st)))
                .finish(map_config(app, |_| AppConfig::default()))
                .rustls_0_23(tls.clone())
        }),
    }
}

/// Connection settings as actix-web's `HttpServer` has them by default, with
/// Nagle off (frames are small and wanted now).
fn builder_for<T, S>(request_timeout: Duration, addr: SocketAddr) -> HttpServiceBuilder<T, S>
where
    S: ServiceFactory<Request, Config = ()>,
    S::Error: Into<Response<BoxBody>> + 'static,
    S::InitError: std::fmt::Debug,
    <S::Service as Service<Request>>::Future: 'static,
{
    HttpServiceBuilder::default()
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .local_addr(addr)
}

/// The upgrade service: every request with `Connection: upgrade`.
fn upgrades<T: ws::socket::Io>(
    st: web::Data<AppState>,
) -> impl ServiceFactory<
    (Request, Framed<T, h1::Codec>),
    Config = (),
    Response = (),
    Error = actix_web::Error,
    InitError = (),
> {
    fn_service(move |(req, framed): (Request, Framed<T, h1::Codec>)| {
        let st = web::Data::clone(&st);
        async move {
            ws::upgrade(st, req, framed).await;
            Ok(())
        }
    })
}
