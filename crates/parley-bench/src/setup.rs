//! Fixtures written straight through the store (the API would only add
//! HTTP round trips to the set-up): one infobase, users with tokens,
//! conversations.

use futures_util::stream::{self, StreamExt, TryStreamExt};
use parley_core::crypto;
use parley_core::protocol::ConversationKind;
use parley_core::{ConversationId, InfobaseId, SubscriberId, TokenId, UserId};
use parley_store::{
    ConfirmOutcome, CreateOutcome, NewCode, NewConversation, NewInfobase, NewToken, Store,
    UserFields,
};

pub type Result<T> = std::result::Result<T, String>;

/// A store on the bench's database, its connections opened lazily.
pub fn store(url: &str, max_connections: u32) -> Result<Store> {
    Store::connect_lazy(&parley_store::StoreOptions {
        url: url.to_owned(),
        max_connections,
        acquire_timeout: std::time::Duration::from_secs(30),
        transaction_pooler: false,
        read_url: None,
    })
    .map_err(|e| e.to_string())
}

pub struct Fixture {
    pub store: Store,
    pub subscriber: SubscriberId,
    pub infobase: InfobaseId,
}

pub async fn fixture(store: Store) -> Result<Fixture> {
    let email = format!("bench-{}@example.com", uuid::Uuid::new_v4().simple());
    store
        .insert_code(&NewCode {
            email: email.clone(),
            salt: vec![0; 16],
            code_hash: vec![0; 32],
            expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
            client_addr: "bench".into(),
        })
        .await
        .map_err(|e| e.to_string())?;
    let ib = NewInfobase {
        id: InfobaseId::new_random(),
        name: "bench".into(),
        key_hash: crypto::sha256(b"unused"),
    };
    match store
        .confirm_code(&email, 5, |_, _| true, &ib)
        .await
        .map_err(|e| e.to_string())?
    {
        ConfirmOutcome::Registered {
            subscriber_id,
            infobase_id,
        } => Ok(Fixture {
            store,
            subscriber: subscriber_id,
            infobase: infobase_id,
        }),
        ConfirmOutcome::Denied(r) => Err(format!("fixture registration refused: {r:?}")),
    }
}

impl Fixture {
    /// `n` users with a session token each.
    pub async fn users(&self, n: usize, tag: &str) -> Result<Vec<(UserId, String)>> {
        stream::iter(0..n)
            .map(|i| async move {
                let (user, _) = self
                    .store
                    .upsert_user(
                        self.infobase,
                        &UserFields {
                            external_id: format!("{tag}-{i}"),
                            name: format!("{tag}{i}"),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let token = crypto::secret(crypto::SESSION_TOKEN_PREFIX);
                self.store
                    .insert_token(&NewToken {
                        id: TokenId::new_random(),
                        token_hash: crypto::sha256(token.as_bytes()),
                        user_id: user.id,
                        infobase_id: self.infobase,
                        expires_at: chrono::Utc::now() + chrono::Duration::hours(6),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((user.id, token))
            })
            .buffered(32)
            .try_collect()
            .await
    }

    pub async fn group(&self, members: &[UserId], max_members: usize) -> Result<ConversationId> {
        let new = NewConversation {
            subscriber_id: self.subscriber,
            kind: ConversationKind::Group,
            title: "bench".into(),
            hidden: false,
            infobase_id: Some(self.infobase),
            key: None,
            object_ref: None,
            created_by: None,
            members: members.to_vec(),
        };
        match self
            .store
            .create_conversation(&new, max_members)
            .await
            .map_err(|e| e.to_string())?
        {
            CreateOutcome::Created(id, _) | CreateOutcome::Existing(id) => Ok(id),
        }
    }
}

impl Fixture {
    /// The dialog of two users.
    pub async fn dialog(&self, a: UserId, b: UserId) -> Result<ConversationId> {
        let new = NewConversation {
            subscriber_id: self.subscriber,
            kind: ConversationKind::Dialog,
            title: String::new(),
            hidden: false,
            infobase_id: Some(self.infobase),
            key: None,
            object_ref: None,
            created_by: None,
            members: vec![a, b],
        };
        match self
            .store
            .create_conversation(&new, 2)
            .await
            .map_err(|e| e.to_string())?
        {
            CreateOutcome::Created(id, _) | CreateOutcome::Existing(id) => Ok(id),
        }
    }
}
