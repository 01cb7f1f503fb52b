//! What an infobase does about itself: its record, unregistering, its users
//! and their session tokens; and the development sign-in. Every query is
//! scoped by the calling infobase.

use crate::{Error, Result, Service};
use chrono::Utc;
use parley_bus::Revoke;
use parley_core::api::{
    Infobase, IssueToken, SessionToken, UpsertUser, UpsertedUser, User, UserPage,
};
use parley_core::crypto::{self, sha256, SESSION_TOKEN_PREFIX};
use parley_core::validate::{self, *};
use parley_core::{ErrorCode, InfobaseActor, InfobaseId, TokenId, UserActor, UserId};
use parley_store::{NewToken, UserFields};
use std::time::Duration;

/// A page of an infobase's users.
#[derive(Clone, Debug, Default)]
pub struct UserQuery {
    pub after: Option<UserId>,
    pub limit: Option<u32>,
    pub external_id: Option<String>,
}

/// Deleted users keep their row under this external id prefix
/// (`deleted:<id>`, set by the store).
const DELETED_PREFIX: &str = "deleted:";

fn opt_text(field: &'static str, v: &Option<String>, max: usize) -> Result<Option<String>> {
    v.as_deref()
        .map(|s| validate::optional_text(field, s, max))
        .transpose()
        .map_err(Error::from)
}

impl Service {
    pub async fn infobase(&self, me: &InfobaseActor) -> Result<Infobase> {
        self.store
            .infobase(me.id)
            .await?
            .ok_or_else(|| Error::not_found("infobase"))
    }

    /// Unregisters the infobase: its key and its users' tokens stop working.
    pub async fn unregister(&self, me: &InfobaseActor) -> Result<()> {
        let Some(users) = self.store.unregister_infobase(me.id).await? else {
            return Err(Error::not_found("infobase"));
        };
        self.revoke_sessions(users, Revoke::Users);
        tracing::info!(infobase_id = %me.id, "infobase unregistered");
        Ok(())
    }

    /// Creates the user, or updates it when `external_id` is known already.
    pub async fn upsert_user(&self, me: &InfobaseActor, body: &UpsertUser) -> Result<UpsertedUser> {
        let email = match body.email.as_deref().map(str::trim) {
            None => None,
            Some("") => Some(String::new()),
            Some(e) => Some(validate::email(e)?),
        };
        let external_id = validate::text("external_id", &body.external_id, MAX_USER_ID_CHARS)?;
        if external_id.starts_with(DELETED_PREFIX) {
            return Err(Error::invalid(format!(
                "external_id: the prefix {DELETED_PREFIX} is reserved for deleted users"
            )));
        }
        let fields = UserFields {
            external_id,
            name: validate::text("name", &body.name, MAX_USER_NAME_CHARS)?,
            full_name: opt_text("full_name", &body.full_name, MAX_USER_FULL_NAME_CHARS)?,
            email,
            phone: opt_text("phone", &body.phone, MAX_PHONE_CHARS)?,
            picture: opt_text("picture", &body.picture, MAX_PICTURE_CHARS)?,
            bot: body.bot,
            locked: body.locked,
        };
        let max = self.cfg.limits.max_users_per_infobase;
        if self
            .store
            .user_by_external_id(me.id, &fields.external_id)
            .await?
            .is_none()
            && self.store.count_users(me.id).await? >= i64::try_from(max).unwrap_or(i64::MAX)
        {
            // Checked before the insert: concurrent creations may pass it
            // together and go a few over, never unboundedly.
            return Err(Error::new(
                ErrorCode::LimitReached,
                format!("the infobase has {max} users (limits.max_users_per_infobase); delete some first"),
            ));
        }
        let (user, created) = self.store.upsert_user(me.id, &fields).await?;
        if user.locked {
            // Its tokens were revoked with the change; its open sessions end.
            self.revoke_sessions(vec![user.id], Revoke::Users);
        }
        Ok(UpsertedUser { created, user })
    }

    /// Deletes a user: its tokens stop working and its open sessions close
    /// on every node, it leaves its groups and contextual conversations, and
    /// its external id may be used again (for a new user with a new id).
    pub async fn delete_user(&self, me: &InfobaseActor, id: UserId) -> Result<()> {
        let Some(left) = self.store.delete_user(me.id, id).await? else {
            return Err(Error::not_found("user"));
        };
        self.revoke_sessions(vec![id], Revoke::Users);
        for committed in left {
            self.publish(committed);
        }
        tracing::info!(infobase_id = %me.id, user_id = %id, "user deleted");
        Ok(())
    }

    pub async fn list_users(&self, me: &InfobaseActor, q: &UserQuery) -> Result<UserPage> {
        if let Some(ext) = &q.external_id {
            let users = self
                .store
                .user_by_external_id(me.id, ext)
                .await?
                .into_iter()
                .collect();
            return Ok(UserPage {
                users,
                next_cursor: None,
            });
        }
        let lim = &self.cfg.limits;
        let limit = q.limit.unwrap_or(lim.default_user_page);
        if !(1..=lim.max_user_page).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {} (limits.max_user_page)",
                lim.max_user_page
            )));
        }
        let mut users = self
            .store
            .list_users(me.id, q.after, i64::from(limit) + 1)
            .await?;
        let more = users.len() > limit as usize;
        users.truncate(limit as usize);
        let next_cursor = if more {
            users.last().map(|u| u.id)
        } else {
            None
        };
        Ok(UserPage { users, next_cursor })
    }

    /// One user of the calling infobase (users of others look missing).
    pub async fn user_of(&self, me: &InfobaseActor, id: UserId) -> Result<User> {
        self.store
            .user(me.id, id)
            .await?
            .ok_or_else(|| Error::not_found("user"))
    }

    /// Issues a session token for a user of the infobase.
    pub async fn issue_token(
        &self,
        me: &InfobaseActor,
        user_id: UserId,
        body: &IssueToken,
    ) -> Result<SessionToken> {
        let auth = &self.cfg.auth;
        let ttl = match body.ttl_seconds {
            None => auth.token_ttl_secs,
            Some(t) if (auth.min_token_ttl_secs..=auth.max_token_ttl_secs).contains(&t) => t,
            Some(_) => {
                return Err(Error::invalid(format!(
                    "ttl_seconds: must be between {} (auth.min_token_ttl_secs) and {} (auth.max_token_ttl_secs)",
                    auth.min_token_ttl_secs, auth.max_token_ttl_secs
                )))
            }
        };
        let user = self.user_of(me, user_id).await?;
        if user.locked {
            return Err(Error::access_denied("the user is locked"));
        }
        self.mint_token(me.id, user_id, ttl).await
    }

    /// Revokes one token of a user of the infobase; its open sessions end.
    pub async fn revoke_token(
        &self,
        me: &InfobaseActor,
        user: UserId,
        token: TokenId,
    ) -> Result<()> {
        if !self.store.revoke_token(me.id, user, token).await? {
            return Err(Error::not_found("token"));
        }
        self.revoke_sessions(vec![user], Revoke::Token(token));
        Ok(())
    }

    /// Revokes every token of a user of the infobase ("log out everywhere");
    /// every open session of the user ends. Returns how many were revoked.
    pub async fn revoke_user_tokens(&self, me: &InfobaseActor, user: UserId) -> Result<u64> {
        self.user_of(me, user).await?;
        let n = self.store.revoke_user_tokens(me.id, user).await?;
        self.revoke_sessions(vec![user], Revoke::Users);
        Ok(n)
    }

    /// The user logs out: the token of the session is revoked and every
    /// session opened with it ends.
    pub async fn logout(&self, me: &UserActor, token: TokenId) -> Result<()> {
        self.store.revoke_token_by_id(token).await?;
        self.revoke_sessions(vec![me.id()], Revoke::Token(token));
        Ok(())
    }

    async fn mint_token(
        &self,
        infobase: InfobaseId,
        user_id: UserId,
        ttl: u64,
    ) -> Result<SessionToken> {
        let max = self.cfg.limits.max_live_tokens_per_infobase;
        if self.store.count_live_tokens(infobase).await? >= i64::try_from(max).unwrap_or(i64::MAX) {
            return Err(Error::new(
                ErrorCode::LimitReached,
                format!(
                    "the infobase holds {max} live tokens (limits.max_live_tokens_per_infobase); \
                     revoke some or issue shorter ones"
                ),
            ));
        }
        let token = crypto::secret(SESSION_TOKEN_PREFIX);
        let expires_at = Utc::now() + Duration::from_secs(ttl);
        let new = NewToken {
            id: TokenId::new_random(),
            token_hash: sha256(token.as_bytes()),
            user_id,
            infobase_id: infobase,
            expires_at,
        };
        if !self.store.insert_token(&new).await? {
            // Locked or removed between the read and the insert.
            return Err(Error::access_denied("the user is locked"));
        }
        Ok(SessionToken {
            token,
            token_id: new.id,
            user_id,
            expires_at,
        })
    }

    /// Development sign-in (only with `web.dev_signin = true`): a user of the
    /// "Development" infobase by name, and a token for it.
    pub async fn dev_signin(&self, name: &str) -> Result<SessionToken> {
        if !self.cfg.dev_signin {
            return Err(Error::not_found("route"));
        }
        let name = validate::text("name", name, MAX_USER_NAME_CHARS)?;
        let infobase = self
            .store
            .ensure_infobase(
                "dev@parley.localhost",
                "Development",
                &sha256(&crypto::random_bytes::<32>()),
            )
            .await?;
        let fields = UserFields {
            external_id: name.to_lowercase(),
            name,
            ..Default::default()
        };
        let (user, _) = self.store.upsert_user(infobase, &fields).await?;
        self.mint_token(infobase, user.id, self.cfg.auth.token_ttl_secs)
            .await
    }
}
