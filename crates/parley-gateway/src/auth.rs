//! Who is calling: an infobase (HTTP Basic: infobase id + key) or a user
//! (Bearer session token), and from which client address.

use crate::crypto::{ct_eq, sha256};
use crate::error::ApiError;
use crate::state::AppState;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use parley_core::api::User;
use parley_core::{ErrorCode, InfobaseId, SubscriberId};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

/// Longest Authorization header read; anything longer is refused unparsed.
const MAX_AUTH_HEADER: usize = 1024;

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "application state missing"))
}

fn auth_header(req: &HttpRequest) -> Result<&str, ApiError> {
    let v = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "missing Authorization header"))?;
    if v.len() > MAX_AUTH_HEADER {
        return Err(ApiError::new(
            ErrorCode::Unauthenticated,
            "Authorization header too long",
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
    pub id: InfobaseId,
    pub subscriber_id: SubscriberId,
}

impl FromRequest for InfobaseCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let st = state(&req)?;
            let raw = auth_header(&req)?;
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
            let denied = || ApiError::access_denied("wrong infobase id or key");
            let id: InfobaseId = id.parse().map_err(|_| denied())?;
            let auth = st.store.infobase_auth(id).await?;
            // Hash even when the infobase is unknown so both paths cost the same.
            let presented = sha256(key.as_bytes());
            let ok = match &auth {
                Some(a) => ct_eq(&presented, &a.key_hash),
                None => {
                    let _ = ct_eq(&presented, &[0u8; 32]);
                    false
                }
            };
            let auth = match auth {
                Some(a) if ok => a,
                _ => return Err(denied()),
            };
            if let Some(path_id) = req.match_info().get("infobase_id") {
                if path_id.parse::<InfobaseId>().ok() != Some(auth.id) {
                    return Err(ApiError::access_denied(
                        "these credentials belong to another infobase",
                    ));
                }
            }
            Ok(InfobaseCaller {
                id: auth.id,
                subscriber_id: auth.subscriber_id,
            })
        })
    }
}

/// A user authenticated by a live session token.
#[derive(Clone, Debug)]
pub struct UserCaller(pub User, pub SubscriberId);

impl FromRequest for UserCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let st = state(&req)?;
            let raw = auth_header(&req)?;
            let token = raw.strip_prefix("Bearer ").ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unauthenticated,
                    "expected a Bearer session token",
                )
            })?;
            let (user, subscriber) = authenticate_token(&st, token).await?;
            Ok(UserCaller(user, subscriber))
        })
    }
}

/// Checks a session token (also used by the WebSocket).
pub async fn authenticate_token(
    st: &AppState,
    token: &str,
) -> Result<(User, SubscriberId), ApiError> {
    if token.len() > MAX_AUTH_HEADER {
        return Err(ApiError::access_denied(
            "the session token is unknown, expired or revoked",
        ));
    }
    st.store
        .token_user(&sha256(token.trim().as_bytes()))
        .await?
        .ok_or_else(|| ApiError::access_denied("the session token is unknown, expired or revoked"))
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
