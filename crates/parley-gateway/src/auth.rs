//! Who is calling: an infobase (HTTP Basic: infobase id + key) or a user
//! (Bearer session token), and from which client address. The checks are
//! the service's; this file only reads the credentials off the request.

use crate::error::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, FromRequest, HttpRequest};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use parley_core::{ErrorCode, InfobaseActor, InfobaseId, UserActor};
use parley_service::TokenSession;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "application state missing"))
}

fn auth_header<'r>(st: &AppState, req: &'r HttpRequest) -> Result<&'r str, ApiError> {
    let v = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "missing Authorization header"))?;
    if v.len() > st.svc.config().auth.max_credential_bytes {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "Authorization header too long (auth.max_credential_bytes)",
        ));
    }
    v.to_str().map_err(|_| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "Authorization header is not ASCII",
        )
    })
}

/// An authenticated infobase. When the route has an `{infobase_id}` segment it
/// must be this infobase, so one key never reaches another infobase's data.
#[derive(Clone, Debug)]
pub struct InfobaseCaller {
    pub actor: InfobaseActor,
}

impl FromRequest for InfobaseCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let st = state(&req)?;
            let raw = auth_header(&st, &req)?;
            let basic = raw.strip_prefix("Basic ").ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "expected HTTP Basic credentials: infobase id and key",
                )
            })?;
            let decoded = STANDARD
                .decode(basic.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::Unauthenticated, "malformed Basic credentials")
                })?;
            let (id, key) = decoded.split_once(':').ok_or_else(|| {
                ApiError::new(ErrorCode::Unauthenticated, "malformed Basic credentials")
            })?;
            let actor = st.svc.authenticate_infobase(id, key).await?;
            if let Some(path_id) = req.match_info().get("infobase_id") {
                if path_id.parse::<InfobaseId>().ok() != Some(actor.id) {
                    return Err(ApiError::access_denied(
                        "these credentials belong to another infobase",
                    ));
                }
            }
            Ok(InfobaseCaller { actor })
        })
    }
}

/// A user authenticated by a live session token in the `Authorization`
/// header.
#[derive(Clone, Debug)]
pub struct UserCaller {
    pub actor: UserActor,
}

impl FromRequest for UserCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let session = bearer_session(&req).await?;
            Ok(UserCaller {
                actor: session.actor,
            })
        })
    }
}

/// The live session of the request's `Authorization: Bearer` token.
async fn bearer_session(req: &HttpRequest) -> Result<TokenSession, ApiError> {
    let st = state(req)?;
    let raw = auth_header(&st, req)?;
    let token = raw.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "expected a Bearer session token",
        )
    })?;
    Ok(st.svc.authenticate_session(token).await?)
}

/// A user's live session token with its id and expiry (for what is issued
/// on the token's behalf: WebSocket tickets, file links).
#[derive(Clone, Debug)]
pub struct SessionCaller {
    pub session: TokenSession,
}

impl FromRequest for SessionCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            Ok(SessionCaller {
                session: bearer_session(&req).await?,
            })
        })
    }
}

/// The session token of a request, from the Bearer header only: a token is
/// never read from a URL (URLs end up in access logs and browser history).
/// Browsers open the WebSocket with a ticket and fetch files by signed links.
pub fn token_from_request(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    token_from_headers(req.headers())
}

/// [`token_from_request`] for a request seen before actix-web's routing
/// (a WebSocket upgrade).
pub fn token_from_headers(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return v
            .strip_prefix("Bearer ")
            .map(|t| Some(t.trim().to_owned()))
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "expected a Bearer session token",
                )
            });
    }
    Ok(None)
}

/// A query parameter's raw value (tickets and links are URL-safe).
pub fn query_param<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    query_value(req.query_string(), name)
}

/// A parameter's raw value in a query string.
pub fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        kv.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// The client's address: the peer, or the last untrusted hop of
/// `X-Forwarded-For` when the peer is a trusted reverse proxy.
pub fn client_ip(req: &HttpRequest, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip())?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let fwd = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in fwd.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => continue,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(peer)
}
