//! Infobases and subscribers: authentication data, unregistering, admin lists.

use crate::{Result, Store};
use chrono::{DateTime, Utc};
use parley_core::api::Infobase;
use parley_core::{InfobaseId, SubscriberId, UserId};
use sqlx::Row;
use uuid::Uuid;

/// What the gateway needs to authenticate an infobase.
#[derive(Clone, Debug)]
pub struct InfobaseAuth {
    pub id: InfobaseId,
    pub subscriber_id: SubscriberId,
    pub key_hash: Vec<u8>,
}

/// A row of `parley admin infobases list`.
#[derive(Clone, Debug)]
pub struct InfobaseSummary {
    pub id: InfobaseId,
    pub name: String,
    pub subscriber_email: String,
    pub users: i64,
    pub created_at: DateTime<Utc>,
    pub unregistered_at: Option<DateTime<Utc>>,
}

/// A row of `parley admin subscribers list`.
#[derive(Clone, Debug)]
pub struct SubscriberSummary {
    pub id: SubscriberId,
    pub email: String,
    pub infobases: i64,
    pub created_at: DateTime<Utc>,
}

impl Store {
    /// The key hash of a registered (not unregistered) infobase.
    pub async fn infobase_auth(&self, id: InfobaseId) -> Result<Option<InfobaseAuth>> {
        let row = sqlx::query(
            "SELECT subscriber_id, key_hash FROM infobases
             WHERE id = $1 AND unregistered_at IS NULL",
        )
        .bind(id.0)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            Ok(InfobaseAuth {
                id,
                subscriber_id: SubscriberId(r.try_get("subscriber_id")?),
                key_hash: r.try_get("key_hash")?,
            })
        })
        .transpose()
    }

    pub async fn infobase(&self, id: InfobaseId) -> Result<Option<Infobase>> {
        let row = sqlx::query(
            "SELECT subscriber_id, name, created_at FROM infobases
             WHERE id = $1 AND unregistered_at IS NULL",
        )
        .bind(id.0)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            Ok(Infobase {
                id,
                subscriber_id: SubscriberId(r.try_get("subscriber_id")?),
                name: r.try_get("name")?,
                created_at: r.try_get("created_at")?,
            })
        })
        .transpose()
    }

    /// Unregisters the infobase and revokes every session token of its users,
    /// in one transaction. Returns None when it was not registered, else the
    /// users whose tokens were revoked (their open sessions must end).
    pub async fn unregister_infobase(&self, id: InfobaseId) -> Result<Option<Vec<UserId>>> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE infobases SET unregistered_at = now()
             WHERE id = $1 AND unregistered_at IS NULL",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        let mut users = Vec::new();
        if done {
            let revoked: Vec<Uuid> = sqlx::query_scalar(
                "UPDATE session_tokens SET revoked_at = now()
                 WHERE infobase_id = $1 AND revoked_at IS NULL
                 RETURNING user_id",
            )
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await?;
            users = revoked.into_iter().map(UserId).collect();
            users.sort_by_key(|u| u.0);
            users.dedup();
        }
        tx.commit().await?;
        Ok(done.then_some(users))
    }

    /// The infobase named `name` of the subscriber `email`, created with
    /// its subscriber when missing (the development sign-in; no key works
    /// for it: `key_hash` is random).
    pub async fn ensure_infobase(
        &self,
        email: &str,
        name: &str,
        key_hash: &[u8],
    ) -> Result<InfobaseId> {
        let mut tx = self.db.begin().await?;
        let sub: Uuid = sqlx::query_scalar(
            "INSERT INTO subscribers (id, email) VALUES ($1, $2)
             ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING id",
        )
        .bind(Uuid::new_v4())
        .bind(email)
        .fetch_one(&mut *tx)
        .await?;
        // Serialize concurrent first sign-ins on the subscriber row.
        sqlx::query("SELECT 1 FROM subscribers WHERE id = $1 FOR UPDATE")
            .bind(sub)
            .execute(&mut *tx)
            .await?;
        let found: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM infobases WHERE subscriber_id = $1 AND name = $2 AND unregistered_at IS NULL
             ORDER BY created_at LIMIT 1",
        )
        .bind(sub)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let id = match found {
            Some(id) => id,
            None => {
                let id = Uuid::new_v4();
                sqlx::query("INSERT INTO infobases (id, subscriber_id, name, key_hash) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(sub)
                    .bind(name)
                    .bind(key_hash)
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        tx.commit().await?;
        Ok(InfobaseId(id))
    }

    pub async fn list_infobases(&self) -> Result<Vec<InfobaseSummary>> {
        let rows = sqlx::query(
            "SELECT i.id, i.name, s.email, i.created_at, i.unregistered_at,
                    (SELECT count(*) FROM users u WHERE u.infobase_id = i.id) AS users
             FROM infobases i JOIN subscribers s ON s.id = i.subscriber_id
             ORDER BY i.created_at, i.id",
        )
        .fetch_all(&self.db)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(InfobaseSummary {
                    id: InfobaseId(r.try_get::<Uuid, _>("id")?),
                    name: r.try_get("name")?,
                    subscriber_email: r.try_get("email")?,
                    users: r.try_get("users")?,
                    created_at: r.try_get("created_at")?,
                    unregistered_at: r.try_get("unregistered_at")?,
                })
            })
            .collect()
    }

    pub async fn list_subscribers(&self) -> Result<Vec<SubscriberSummary>> {
        let rows = sqlx::query(
            "SELECT s.id, s.email, s.created_at,
                    (SELECT count(*) FROM infobases i
                     WHERE i.subscriber_id = s.id AND i.unregistered_at IS NULL) AS infobases
             FROM subscribers s ORDER BY s.created_at, s.id",
        )
        .fetch_all(&self.db)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(SubscriberSummary {
                    id: SubscriberId(r.try_get::<Uuid, _>("id")?),
                    email: r.try_get("email")?,
                    infobases: r.try_get("infobases")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
