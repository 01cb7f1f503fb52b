//! Session tokens: stored as SHA-256 hashes, checked against the user's lock
//! and the infobase's registration on every use.

use crate::users::user_from_row;
use crate::{Result, Store};
use chrono::{DateTime, Utc};
use parley_core::{InfobaseId, SubscriberId, TokenId, UserActor, UserId};

#[derive(Clone, Debug)]
pub struct NewToken {
    pub id: TokenId,
    pub token_hash: Vec<u8>,
    pub user_id: UserId,
    pub infobase_id: InfobaseId,
    pub expires_at: DateTime<Utc>,
}

impl Store {
    /// Stores a token for an unlocked user of a registered infobase. Returns
    /// false (and stores nothing) when the user is locked or missing.
    pub async fn insert_token(&self, t: &NewToken) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO session_tokens (id, token_hash, user_id, infobase_id, expires_at)
             SELECT $1, $2, u.id, u.infobase_id, $5
             FROM users u JOIN infobases i ON i.id = u.infobase_id
             WHERE u.id = $3 AND u.infobase_id = $4 AND NOT u.locked
               AND i.unregistered_at IS NULL",
        )
        .bind(t.id.0)
        .bind(&t.token_hash)
        .bind(t.user_id.0)
        .bind(t.infobase_id.0)
        .bind(t.expires_at)
        .execute(&self.db)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Revokes one live token of a user of the infobase; false when there is
    /// no such live token.
    pub async fn revoke_token(
        &self,
        infobase: InfobaseId,
        user: UserId,
        token: TokenId,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE session_tokens SET revoked_at = now()
             WHERE id = $1 AND user_id = $2 AND infobase_id = $3 AND revoked_at IS NULL",
        )
        .bind(token.0)
        .bind(user.0)
        .bind(infobase.0)
        .execute(&self.db)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Revokes every live token of a user of the infobase; how many.
    pub async fn revoke_user_tokens(&self, infobase: InfobaseId, user: UserId) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE session_tokens SET revoked_at = now()
             WHERE user_id = $1 AND infobase_id = $2 AND revoked_at IS NULL",
        )
        .bind(user.0)
        .bind(infobase.0)
        .execute(&self.db)
        .await?
        .rows_affected())
    }

    /// Revokes a token by its id (the user logs out).
    pub async fn revoke_token_by_id(&self, token: TokenId) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE session_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(token.0)
        .execute(&self.db)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The user a live token belongs to: not expired, not revoked, user not
    /// locked, infobase still registered.
    pub async fn token_user(&self, token_hash: &[u8]) -> Result<Option<UserActor>> {
        Ok(self.token_session(token_hash).await?.map(|t| t.actor))
    }

    /// As [`Store::token_user`], with the token's id and expiry (a live
    /// session ends when its token does).
    pub async fn token_session(&self, token_hash: &[u8]) -> Result<Option<TokenSession>> {
        let sql = format!("{SESSION_SELECT} WHERE t.token_hash = $1 AND {SESSION_LIVE}");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// A live token by its id (a signed link names the token it was made
    /// for, so revoking the token kills the link too).
    pub async fn token_session_by_id(&self, id: TokenId) -> Result<Option<TokenSession>> {
        let sql = format!("{SESSION_SELECT} WHERE t.id = $1 AND {SESSION_LIVE}");
        let row = sqlx::query(&sql)
            .bind(id.0)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Stores a WebSocket ticket for a token.
    pub async fn insert_ticket(
        &self,
        ticket_hash: &[u8],
        token: TokenId,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO ws_tickets (ticket_hash, token_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(ticket_hash)
        .bind(token.0)
        .bind(expires_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Uses a ticket up (whatever comes next, it never works again) and
    /// returns the session of its token when the ticket was unexpired and
    /// the token is live.
    pub async fn take_ticket(&self, ticket_hash: &[u8]) -> Result<Option<TokenSession>> {
        let sql = format!(
            "WITH used AS (DELETE FROM ws_tickets WHERE ticket_hash = $1 RETURNING token_id, expires_at)
             {SESSION_SELECT} JOIN used ON used.token_id = t.id
             WHERE used.expires_at > now() AND {SESSION_LIVE}"
        );
        let row = sqlx::query(&sql)
            .bind(ticket_hash)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// The cluster's secret of this name, made on first use (every node
    /// reads the same one).
    pub async fn server_secret(&self, name: &str, fresh: &[u8]) -> Result<Vec<u8>> {
        sqlx::query(
            "INSERT INTO server_secrets (name, secret) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.db)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT secret FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.db)
                .await?,
        )
    }

    /// Session tokens of the infobase that are neither expired nor revoked.
    pub async fn count_live_tokens(&self, infobase: InfobaseId) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM session_tokens
             WHERE infobase_id = $1 AND revoked_at IS NULL AND expires_at > now()",
        )
        .bind(infobase.0)
        .fetch_one(&self.db)
        .await?)
    }
}

const SESSION_SELECT: &str =
    "SELECT u.id, u.infobase_id, u.external_id, u.name, u.full_name, u.email, u.phone,
            u.picture, u.bot, u.locked, u.created_at, u.updated_at, i.subscriber_id,
            t.id AS token_id, t.expires_at
     FROM session_tokens t
     JOIN users u ON u.id = t.user_id
     JOIN infobases i ON i.id = t.infobase_id";

/// A token that still speaks for its user.
const SESSION_LIVE: &str = "t.revoked_at IS NULL AND t.expires_at > now()
     AND NOT u.locked AND i.unregistered_at IS NULL";

fn session_from_row(r: &sqlx::postgres::PgRow) -> Result<TokenSession> {
    Ok(TokenSession {
        actor: UserActor {
            user: user_from_row(r)?,
            subscriber_id: SubscriberId(sqlx::Row::try_get(r, "subscriber_id")?),
        },
        token_id: TokenId(sqlx::Row::try_get(r, "token_id")?),
        expires_at: sqlx::Row::try_get(r, "expires_at")?,
    })
}

/// A live token and whom it speaks for.
#[derive(Clone, Debug)]
pub struct TokenSession {
    pub actor: UserActor,
    pub token_id: TokenId,
    pub expires_at: DateTime<Utc>,
}
