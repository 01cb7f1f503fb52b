//! Users of infobases: upsert by the infobase's own id, read, list.

use crate::conversations::{lock_conversation, members_tx, ChangedBy};
use crate::messages::append_event;
use crate::{Committed, Result, Store};
use parley_core::api::User;
use parley_core::protocol::Event;
use parley_core::protocol::UserProfile;
use parley_core::{ConversationId, InfobaseId, SubscriberId, UserId};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

/// Validated fields of an upsert; `None` keeps the stored value on update.
#[derive(Clone, Debug, Default)]
pub struct UserFields {
    pub external_id: String,
    pub name: String,
    pub full_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub picture: Option<String>,
    pub bot: Option<bool>,
    pub locked: Option<bool>,
}

const USER_COLUMNS: &str = "id, infobase_id, external_id, name, full_name, email, phone, \
                            picture, bot, locked, created_at, updated_at";

pub(crate) fn user_from_row(r: &PgRow) -> Result<User> {
    Ok(User {
        id: UserId(r.try_get("id")?),
        infobase_id: InfobaseId(r.try_get("infobase_id")?),
        external_id: r.try_get("external_id")?,
        name: r.try_get("name")?,
        full_name: r.try_get("full_name")?,
        email: r.try_get("email")?,
        phone: r.try_get("phone")?,
        picture: r.try_get("picture")?,
        bot: r.try_get("bot")?,
        locked: r.try_get("locked")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Store {
    /// Creates the user or updates it by `(infobase, external_id)`; the Parley
    /// id never changes. Locking a user revokes its tokens in the same
    /// transaction. Returns the user and whether it was created.
    pub async fn upsert_user(&self, infobase: InfobaseId, f: &UserFields) -> Result<(User, bool)> {
        let mut tx = self.db.begin().await?;
        let sql = format!(
            "INSERT INTO users (id, infobase_id, external_id, name, full_name, email, phone,
                                picture, bot, locked)
             VALUES ($1, $2, $3, $4, COALESCE($5, ''), COALESCE($6, ''), COALESCE($7, ''),
                     COALESCE($8, ''), COALESCE($9, false), COALESCE($10, false))
             ON CONFLICT (infobase_id, external_id) DO UPDATE SET
                 name = EXCLUDED.name,
                 full_name = COALESCE($5, users.full_name),
                 email = COALESCE($6, users.email),
                 phone = COALESCE($7, users.phone),
                 picture = COALESCE($8, users.picture),
                 bot = COALESCE($9, users.bot),
                 locked = COALESCE($10, users.locked),
                 updated_at = now()
             RETURNING {USER_COLUMNS}, (xmax = 0) AS inserted"
        );
        let row = sqlx::query(&sql)
            .bind(Uuid::new_v4())
            .bind(infobase.0)
            .bind(&f.external_id)
            .bind(&f.name)
            .bind(&f.full_name)
            .bind(&f.email)
            .bind(&f.phone)
            .bind(&f.picture)
            .bind(f.bot)
            .bind(f.locked)
            .fetch_one(&mut *tx)
            .await?;
        let user = user_from_row(&row)?;
        let inserted: bool = row.try_get("inserted")?;
        if user.locked {
            sqlx::query(
                "UPDATE session_tokens SET revoked_at = now()
                 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(user.id.0)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok((user, inserted))
    }

    /// A user of this infobase (never of another one).
    pub async fn user(&self, infobase: InfobaseId, id: UserId) -> Result<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE id = $1 AND infobase_id = $2 AND deleted_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(id.0)
            .bind(infobase.0)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// A user of this infobase by the infobase's own id.
    pub async fn user_by_external_id(
        &self,
        infobase: InfobaseId,
        external_id: &str,
    ) -> Result<Option<User>> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE infobase_id = $1 AND external_id = $2 AND deleted_at IS NULL");
        let row = sqlx::query(&sql)
            .bind(infobase.0)
            .bind(external_id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Profiles of the given users that belong to registered infobases of
    /// `subscriber` (others are left out).
    pub async fn profiles(
        &self,
        subscriber: SubscriberId,
        ids: &[UserId],
    ) -> Result<Vec<UserProfile>> {
        let rows = sqlx::query(
            "SELECT u.id, u.name, u.full_name, u.picture, u.bot FROM users u
             JOIN infobases i ON i.id = u.infobase_id
             WHERE u.id = ANY($1) AND i.subscriber_id = $2 AND i.unregistered_at IS NULL
             ORDER BY u.id",
        )
        .bind(ids.iter().map(|u| u.0).collect::<Vec<_>>())
        .bind(subscriber.0)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UserProfile {
                    id: UserId(r.try_get("id")?),
                    name: r.try_get("name")?,
                    full_name: r.try_get("full_name")?,
                    picture: r.try_get("picture")?,
                    bot: r.try_get("bot")?,
                })
            })
            .collect()
    }

    /// Unlocked, undeleted users of registered infobases of `subscriber`
    /// whose name or full name contains `query` (case- and ё-insensitive),
    /// by name then id, `limit` after the `(name, id)` cursor.
    pub async fn search_users(
        &self,
        subscriber: SubscriberId,
        query: &str,
        after: Option<(&str, UserId)>,
        limit: i64,
    ) -> Result<Vec<UserProfile>> {
        // LIKE's own characters in the query match themselves.
        let escaped = query
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let rows = sqlx::query(
            "SELECT u.id, u.name, u.full_name, u.picture, u.bot FROM users u
             JOIN infobases i ON i.id = u.infobase_id
             WHERE i.subscriber_id = $1 AND i.unregistered_at IS NULL
               AND NOT u.locked AND u.deleted_at IS NULL
               AND lower(translate(u.name || ' ' || u.full_name, 'ёЁ', 'еЕ'))
                   LIKE '%' || lower(translate($2, 'ёЁ', 'еЕ')) || '%'
               AND ($3::text IS NULL OR (u.name, u.id) > ($3, $4))
             ORDER BY u.name, u.id LIMIT $5",
        )
        .bind(subscriber.0)
        .bind(escaped)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1 .0))
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UserProfile {
                    id: UserId(r.try_get("id")?),
                    name: r.try_get("name")?,
                    full_name: r.try_get("full_name")?,
                    picture: r.try_get("picture")?,
                    bot: r.try_get("bot")?,
                })
            })
            .collect()
    }

    /// Users of the infobase ordered by id, `limit` after the `after` cursor.
    pub async fn list_users(
        &self,
        infobase: InfobaseId,
        after: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE infobase_id = $1 AND deleted_at IS NULL AND ($2::uuid IS NULL OR id > $2)
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(infobase.0)
            .bind(after.map(|a| a.0))
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Users of the infobase that are not deleted.
    pub async fn count_users(&self, infobase: InfobaseId) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM users WHERE infobase_id = $1 AND deleted_at IS NULL",
        )
        .bind(infobase.0)
        .fetch_one(&self.db)
        .await?)
    }

    /// Deletes a user of the infobase in one transaction: its tokens are
    /// revoked, it leaves every group and contextual conversation (each with
    /// a `member.removed` event), its external id is freed and its contact
    /// fields cleared. The row stays so that history and dialogs still name
    /// the author. None when there is no such (undeleted) user.
    pub async fn delete_user(
        &self,
        infobase: InfobaseId,
        id: UserId,
    ) -> Result<Option<Vec<Committed>>> {
        let mut tx = self.db.begin().await?;
        let done = sqlx::query(
            "UPDATE users SET deleted_at = now(), locked = true, updated_at = now(),
                    external_id = 'deleted:' || id::text,
                    full_name = '', email = '', phone = '', picture = ''
             WHERE id = $1 AND infobase_id = $2 AND deleted_at IS NULL",
        )
        .bind(id.0)
        .bind(infobase.0)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !done {
            return Ok(None);
        }
        sqlx::query(
            "UPDATE session_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        // In id order, so that two such transactions never wait on each
        // other in a cycle.
        let convs: Vec<Uuid> = sqlx::query_scalar(
            "SELECT m.conversation_id FROM members m JOIN conversations c ON c.id = m.conversation_id
             WHERE m.user_id = $1 AND c.kind <> 'dialog' ORDER BY m.conversation_id",
        )
        .bind(id.0)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(convs.len());
        for conv in convs.into_iter().map(ConversationId) {
            lock_conversation(&mut tx, conv).await?;
            sqlx::query("DELETE FROM members WHERE conversation_id = $1 AND user_id = $2")
                .bind(conv.0)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            let ev = append_event(&mut tx, conv, None, |seq| Event::MemberRemoved {
                conversation_id: conv,
                seq,
                user_id: id,
                by: None,
            })
            .await?;
            let by = ChangedBy(None);
            let line = crate::conversations::member_line("removed", id, by);
            crate::conversations::timeline_line(&mut tx, conv, ev.seq, by, line).await?;
            let members = members_tx(&mut tx, conv).await?;
            out.push(Committed {
                events: vec![ev],
                members,
            });
        }
        tx.commit().await?;
        Ok(Some(out))
    }
}
