//! Registration codes and the confirm step that turns one into an infobase.

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use parley_core::{InfobaseId, SubscriberId};
use sqlx::Row;
use uuid::Uuid;

/// A freshly generated code, already hashed by the caller.
#[derive(Clone, Debug)]
pub struct NewCode {
    pub email: String,
    pub salt: Vec<u8>,
    pub code_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
    pub client_addr: String,
}

/// The infobase to create when a code is confirmed.
#[derive(Clone, Debug)]
pub struct NewInfobase {
    pub id: InfobaseId,
    pub name: String,
    pub key_hash: Vec<u8>,
}

/// Why a confirmation was refused (logged; the caller only says `access_denied`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No unused, unexpired code for this e-mail.
    NoActiveCode,
    TooManyAttempts,
    WrongCode,
}

#[derive(Clone, Debug)]
pub enum ConfirmOutcome {
    Registered {
        subscriber_id: SubscriberId,
        infobase_id: InfobaseId,
    },
    Denied(DenyReason),
}

impl Store {
    /// How many codes were requested for `email` since `since` (rate limit that
    /// holds across every node).
    pub async fn codes_requested_since(&self, email: &str, since: DateTime<Utc>) -> Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM registration_codes WHERE email = $1 AND created_at >= $2",
        )
        .bind(email)
        .bind(since)
        .fetch_one(&self.db)
        .await?;
        Ok(n)
    }

    /// Codes requested from a client address since `since`, by any node.
    pub async fn codes_requested_from_since(
        &self,
        client_addr: &str,
        since: DateTime<Utc>,
    ) -> Result<i64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM registration_codes WHERE client_addr = $1 AND created_at >= $2",
        )
        .bind(client_addr)
        .bind(since)
        .fetch_one(&self.db)
        .await?;
        Ok(n)
    }

    /// Stores a new code; any earlier code of the e-mail stops working, so only
    /// the latest mail counts.
    pub async fn insert_code(&self, code: &NewCode) -> Result<()> {
        let mut tx = self.db.begin().await?;
        sqlx::query(
            "UPDATE registration_codes SET expires_at = now()
             WHERE email = $1 AND used_at IS NULL AND expires_at > now()",
        )
        .bind(&code.email)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO registration_codes (id, email, salt, code_hash, expires_at, client_addr)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(Uuid::new_v4())
        .bind(&code.email)
        .bind(&code.salt)
        .bind(&code.code_hash)
        .bind(code.expires_at)
        .bind(&code.client_addr)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Checks the e-mail's live code with `verify(salt, hash)` under a row lock
    /// and, when it matches, consumes it and registers the infobase in the same
    /// transaction. Concurrent confirms of one code serialize on the lock, and
    /// only the first finds the code unused.
    pub async fn confirm_code(
        &self,
        email: &str,
        max_attempts: i32,
        verify: impl FnOnce(&[u8], &[u8]) -> bool,
        infobase: &NewInfobase,
    ) -> Result<ConfirmOutcome> {
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "SELECT id, salt, code_hash, attempts FROM registration_codes
             WHERE email = $1 AND used_at IS NULL AND expires_at > now()
             ORDER BY created_at DESC LIMIT 1
             FOR UPDATE",
        )
        .bind(email)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(ConfirmOutcome::Denied(DenyReason::NoActiveCode));
        };
        let code_id: Uuid = row.try_get("id")?;
        let salt: Vec<u8> = row.try_get("salt")?;
        let hash: Vec<u8> = row.try_get("code_hash")?;
        let attempts: i32 = row.try_get("attempts")?;
        if attempts >= max_attempts {
            return Ok(ConfirmOutcome::Denied(DenyReason::TooManyAttempts));
        }
        if !verify(&salt, &hash) {
            sqlx::query("UPDATE registration_codes SET attempts = attempts + 1 WHERE id = $1")
                .bind(code_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(ConfirmOutcome::Denied(DenyReason::WrongCode));
        }
        sqlx::query("UPDATE registration_codes SET used_at = now() WHERE id = $1")
            .bind(code_id)
            .execute(&mut *tx)
            .await?;
        let subscriber_id: Uuid = sqlx::query_scalar(
            "INSERT INTO subscribers (id, email) VALUES ($1, $2)
             ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email
             RETURNING id",
        )
        .bind(Uuid::new_v4())
        .bind(email)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO infobases (id, subscriber_id, name, key_hash) VALUES ($1, $2, $3, $4)",
        )
        .bind(infobase.id.0)
        .bind(subscriber_id)
        .bind(&infobase.name)
        .bind(&infobase.key_hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ConfirmOutcome::Registered {
            subscriber_id: SubscriberId(subscriber_id),
            infobase_id: infobase.id,
        })
    }
}
