//! Who is calling: a user by a session token, an infobase by its key. Both
//! secrets are stored hashed and compared in constant time.

use crate::{Error, Result, Service};
use parley_bus::{Envelope, Revoke};
use parley_core::crypto::{ct_eq, sha256};
use parley_core::{InfobaseActor, InfobaseId, UserActor, UserId};
use parley_store::TokenSession;
use std::sync::Arc;

impl Service {
    /// Checks a session token (REST, WebSocket and file downloads alike).
    pub async fn authenticate_token(&self, token: &str) -> Result<UserActor> {
        Ok(self.authenticate_session(token).await?.actor)
    }

    /// As [`Service::authenticate_token`], with the token's id and expiry,
    /// which a live session needs to end with its token.
    pub async fn authenticate_session(&self, token: &str) -> Result<TokenSession> {
        let denied = || Error::access_denied("the session token is unknown, expired or revoked");
        if token.len() > self.cfg.auth.max_credential_bytes {
            return Err(denied());
        }
        self.store
            .token_session(&sha256(token.trim().as_bytes()))
            .await?
            .ok_or_else(denied)
    }

    /// Ends the open sessions of `users` on every node (all of them, or
    /// those of one token), at once: access was taken away.
    pub(crate) fn revoke_sessions(&self, users: Vec<UserId>, revoke: Revoke) {
        if users.is_empty() {
            return;
        }
        self.bus
            .publish(Arc::new(Envelope::revocation(users, revoke)));
    }

    /// Checks an infobase's id and key.
    pub async fn authenticate_infobase(&self, id: &str, key: &str) -> Result<InfobaseActor> {
        let denied = || Error::access_denied("wrong infobase id or key");
        let id: InfobaseId = id.parse().map_err(|_| denied())?;
        let auth = self.store.infobase_auth(id).await?;
        // Hash even when the infobase is unknown so both paths cost the same.
        let presented = sha256(key.as_bytes());
        let ok = match &auth {
            Some(a) => ct_eq(&presented, &a.key_hash),
            None => {
                let _ = ct_eq(&presented, &[0u8; 32]);
                false
            }
        };
        match auth {
            Some(a) if ok => Ok(InfobaseActor {
                id: a.id,
                subscriber_id: a.subscriber_id,
            }),
            _ => Err(denied()),
        }
    }
}
