//! Credentials for URLs a browser opens without headers: a single-use,
//! short-lived ticket for the WebSocket, and a signed, short-lived link for
//! a file. Neither is the long-lived session token, so neither leaks it into
//! access logs or browser history; both die with the token they came from.

use crate::{Error, Result, Service, TokenSession};
use chrono::Utc;
use parley_core::api::{FileLink, WsTicket};
use parley_core::crypto::{self, sha256, TICKET_PREFIX};
use parley_core::{FileId, TokenId, UserActor};
use std::time::Duration;

/// The cluster secret that signs file links (in PostgreSQL, made once).
const LINK_SECRET: &str = "file-links";

fn bad_link() -> Error {
    Error::access_denied("the file link is invalid or expired; ask for a new one")
}

impl Service {
    /// A ticket that opens one WebSocket session for the token's user.
    pub async fn issue_ws_ticket(&self, session: &TokenSession) -> Result<WsTicket> {
        let ticket = crypto::secret(TICKET_PREFIX);
        let ttl = Duration::from_secs(self.cfg.auth.ticket_ttl_secs);
        // Never beyond the token it stands for.
        let expires_at = (Utc::now() + ttl).min(session.expires_at);
        self.store
            .insert_ticket(&sha256(ticket.as_bytes()), session.token_id, expires_at)
            .await?;
        Ok(WsTicket { ticket, expires_at })
    }

    /// Uses a ticket up; the session it opens is the token's.
    pub async fn authenticate_ticket(&self, ticket: &str) -> Result<TokenSession> {
        let denied = || Error::access_denied("the ticket is unknown, used or expired");
        if ticket.len() > self.cfg.auth.max_credential_bytes || !ticket.starts_with(TICKET_PREFIX) {
            return Err(denied());
        }
        self.store
            .take_ticket(&sha256(ticket.as_bytes()))
            .await?
            .ok_or_else(denied)
    }

    async fn link_key(&self) -> Result<&[u8]> {
        self.server_key(&self.link_key, LINK_SECRET).await
    }

    /// A 256-bit key of the cluster by name (made by the first node that
    /// asks, in `server_secrets`), read once into `cell`.
    pub(crate) async fn server_key<'a>(
        &self,
        cell: &'a tokio::sync::OnceCell<Vec<u8>>,
        name: &str,
    ) -> Result<&'a [u8]> {
        let key = cell
            .get_or_try_init(|| async {
                self.store
                    .server_secret(name, &crypto::random_bytes::<32>())
                    .await
            })
            .await?;
        Ok(key)
    }

    /// A download link of a file the user may read.
    pub async fn file_link(&self, session: &TokenSession, id: FileId) -> Result<FileLink> {
        self.readable_file(&session.actor, id).await?;
        let ttl = Duration::from_secs(self.cfg.auth.link_ttl_secs);
        let expires_at = (Utc::now() + ttl).min(session.expires_at);
        let exp = expires_at.timestamp().to_string();
        let token = session.token_id.to_string();
        let sig = crypto::sign(self.link_key().await?, &[&id.to_string(), &token, &exp]);
        Ok(FileLink {
            url: format!(
                "/v1/files/{id}/content?link={token}.{exp}.{}",
                crypto::b64url(&sig)
            ),
            expires_at,
        })
    }

    /// Whom a link (`TOKEN_ID.EXPIRY.SIGNATURE`) of this file speaks for:
    /// the signature must match, the link be unexpired and its token live.
    pub async fn authenticate_link(&self, id: FileId, link: &str) -> Result<UserActor> {
        if link.len() > self.cfg.auth.max_credential_bytes {
            return Err(bad_link());
        }
        let mut parts = link.split('.');
        let (Some(token), Some(exp), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad_link());
        };
        let sig = crypto::from_b64url(sig).ok_or_else(bad_link)?;
        let want = crypto::sign(self.link_key().await?, &[&id.to_string(), token, exp]);
        if !crypto::ct_eq(&sig, &want) {
            return Err(bad_link());
        }
        let exp: i64 = exp.parse().map_err(|_| bad_link())?;
        if exp <= Utc::now().timestamp() {
            return Err(bad_link());
        }
        let token: TokenId = token.parse().map_err(|_| bad_link())?;
        let session = self
            .store
            .token_session_by_id(token)
            .await?
            .ok_or_else(bad_link)?;
        Ok(session.actor)
    }
}
