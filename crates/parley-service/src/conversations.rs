//! Conversations: groups, dialogs and contextual ones; their members and
//! grants. Users act over WebSocket on what they are members of; an
//! infobase acts over REST on what it created or its users are in.

use crate::{Error, Result, Service};
use parley_core::protocol::{Conversation, ConversationFilter, ConversationKind, ConversationPage};
use parley_core::{validate, ConversationId, FileId, InfobaseActor, InfobaseId, UserActor, UserId};
use parley_store::{
    ChangedBy, ConversationChange, ConversationMeta, CreateOutcome, NewConversation, Viewer,
};

/// A conversation an infobase creates (`POST .../conversations`).
#[derive(Clone, Debug)]
pub struct NewByInfobase {
    pub kind: ConversationKind,
    pub title: String,
    pub members: Vec<UserId>,
    pub hidden: bool,
    pub key: Option<String>,
}

/// A conversation got-or-created, and whether it was created now.
#[derive(Clone, Debug)]
pub struct Opened {
    pub conversation: Conversation,
    pub created: bool,
}

fn viewer(me: &InfobaseActor) -> Viewer {
    Viewer::Infobase(me.id, me.subscriber_id)
}

/// A conversation as an infobase stands to it (docs/api.md "Who owns what").
/// The owner is the infobase that created it (a contextual conversation
/// belongs to the infobase of its object); another infobase of the
/// subscriber sees it only because some of its users are members, and acts
/// only as those users.
#[derive(Clone, Debug)]
pub(crate) struct InfobaseView {
    pub conversation: Conversation,
    pub owner: bool,
}

impl InfobaseView {
    pub fn require_owner(&self, what: &str) -> Result<()> {
        if self.owner {
            return Ok(());
        }
        Err(Error::access_denied(format!(
            "only the infobase that owns this conversation {what}"
        )))
    }
}

/// What a caller asks `conversation.update` (or the REST PATCH) to change:
/// None keeps a field; a picture of Some(None) removes it.
#[derive(Clone, Debug, Default)]
pub struct ConversationUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    pub picture: Option<Option<FileId>>,
}

impl Service {
    /// A user may use a conversation only as a member. Conversations of other
    /// subscribers (and missing ones) are `not_found`; those of the same
    /// subscriber the user is not in are `access_denied`.
    pub(crate) async fn require_member(
        &self,
        me: &UserActor,
        conversation: ConversationId,
    ) -> Result<()> {
        if self.store.is_member(conversation, me.id()).await? {
            return Ok(());
        }
        Err(self.not_member(me, conversation).await)
    }

    /// The refusal for a user who is not a member.
    async fn not_member(&self, me: &UserActor, conversation: ConversationId) -> Error {
        match self.store.conversation_meta(conversation).await {
            Ok(Some(m)) if m.subscriber_id == me.subscriber_id => {
                Error::access_denied("you are not a member of this conversation")
            }
            Ok(_) => Error::not_found("conversation"),
            Err(e) => e.into(),
        }
    }

    /// What a conversation the user is a member of is.
    pub(crate) async fn member_meta(
        &self,
        me: &UserActor,
        id: ConversationId,
    ) -> Result<ConversationMeta> {
        self.require_member(me, id).await?;
        self.store
            .conversation_meta(id)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))
    }

    fn check_list(&self, filter: &mut ConversationFilter) -> Result<()> {
        let lim = &self.cfg.limits;
        let limit = filter.limit.unwrap_or(lim.default_conversation_page);
        if !(1..=lim.max_conversation_page).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {} (limits.max_conversation_page)",
                lim.max_conversation_page
            )));
        }
        filter.limit = Some(limit);
        Ok(())
    }

    fn check_users_count(&self, field: &str, n: usize) -> Result<()> {
        let max = self.cfg.limits.max_users_per_request;
        if n > max {
            return Err(Error::too_large(format!(
                "{field}: more than {max} (limits.max_users_per_request)"
            )));
        }
        Ok(())
    }

    pub async fn conversations_of_user(
        &self,
        me: &UserActor,
        mut filter: ConversationFilter,
    ) -> Result<ConversationPage> {
        self.check_list(&mut filter)?;
        // A user's list shows what is displayed unless hidden ones are
        // asked for (docs/protocol.md); an infobase sees both by default.
        filter.displayed.get_or_insert(true);
        Ok(self
            .store
            .list_conversations(Viewer::User(me.id()), &filter)
            .await?)
    }

    pub async fn conversations_of_infobase(
        &self,
        me: &InfobaseActor,
        mut filter: ConversationFilter,
    ) -> Result<ConversationPage> {
        self.check_list(&mut filter)?;
        Ok(self.store.list_conversations(viewer(me), &filter).await?)
    }

    /// One conversation as a member sees it.
    pub async fn conversation_for_user(
        &self,
        me: &UserActor,
        id: ConversationId,
    ) -> Result<Conversation> {
        match self.store.conversation(id, Viewer::User(me.id())).await? {
            Some(c) => Ok(c),
            None => Err(self.not_member(me, id).await),
        }
    }

    /// One conversation the infobase may see.
    pub async fn conversation_for_infobase(
        &self,
        me: &InfobaseActor,
        id: ConversationId,
    ) -> Result<Conversation> {
        self.store
            .conversation(id, viewer(me))
            .await?
            .ok_or_else(|| Error::not_found("conversation"))
    }

    /// The conversation and whether the infobase owns it.
    pub(crate) async fn infobase_view(
        &self,
        me: &InfobaseActor,
        id: ConversationId,
    ) -> Result<InfobaseView> {
        let conversation = self.conversation_for_infobase(me, id).await?;
        let owner = conversation.infobase_id == Some(me.id);
        Ok(InfobaseView {
            conversation,
            owner,
        })
    }

    /// Creates a conversation (members are bounded by `limits.max_members`
    /// in the store, under the same transaction).
    async fn create(&self, new: NewConversation) -> Result<(ConversationId, bool)> {
        match self
            .store
            .create_conversation(&new, self.cfg.limits.max_members)
            .await?
        {
            CreateOutcome::Created(id, committed) => {
                self.publish(committed);
                Ok((id, true))
            }
            CreateOutcome::Existing(id) => Ok((id, false)),
        }
    }

    /// A group created by a user, who is its first member.
    pub async fn create_group(
        &self,
        me: &UserActor,
        title: &str,
        mut members: Vec<UserId>,
    ) -> Result<Conversation> {
        let title = validate::text("title", title, self.cfg.limits.max_title_chars)?;
        members.push(me.id());
        let (id, _) = self
            .create(NewConversation {
                subscriber_id: me.subscriber_id,
                kind: ConversationKind::Group,
                title,
                hidden: false,
                infobase_id: Some(me.user.infobase_id),
                key: None,
                object_ref: None,
                created_by: Some(me.id()),
                members,
            })
            .await?;
        self.conversation_for_user(me, id).await
    }

    /// The dialog of the user with another (created on first use).
    pub async fn open_dialog(&self, me: &UserActor, other: UserId) -> Result<Conversation> {
        if other == me.id() {
            return Err(Error::invalid("user_id: a dialog is with another user"));
        }
        let (id, _) = self
            .create(NewConversation {
                subscriber_id: me.subscriber_id,
                kind: ConversationKind::Dialog,
                title: String::new(),
                hidden: false,
                infobase_id: Some(me.user.infobase_id),
                key: None,
                object_ref: None,
                created_by: Some(me.id()),
                members: vec![me.id(), other],
            })
            .await?;
        self.conversation_for_user(me, id).await
    }

    /// A group or dialog created by an infobase over REST.
    pub async fn create_by_infobase(&self, me: &InfobaseActor, b: NewByInfobase) -> Result<Opened> {
        let max_title = self.cfg.limits.max_title_chars;
        let title = match b.kind {
            ConversationKind::Group => validate::text("title", &b.title, max_title)?,
            ConversationKind::Dialog => validate::optional_text("title", &b.title, max_title)?,
            ConversationKind::Context => {
                return Err(Error::invalid(
                    "kind: contextual conversations are opened with PUT .../contexts",
                ))
            }
        };
        let key = b
            .key
            .map(|k| validate::text("key", &k, self.cfg.limits.max_key_chars))
            .transpose()?;
        if b.kind == ConversationKind::Dialog
            && self
                .store
                .users_of_infobase(me.id, &b.members)
                .await?
                .is_empty()
        {
            // Otherwise an infobase could take the dialog of two users of
            // another infobase and own it.
            return Err(Error::access_denied(
                "members: an infobase opens dialogs only for its own users",
            ));
        }
        let (id, created) = self
            .create(NewConversation {
                subscriber_id: me.subscriber_id,
                kind: b.kind,
                title,
                hidden: b.hidden,
                infobase_id: Some(me.id),
                key,
                object_ref: None,
                created_by: None,
                members: b.members,
            })
            .await?;
        let conversation = self.conversation_for_infobase(me, id).await?;
        Ok(Opened {
            conversation,
            created,
        })
    }

    /// Gets or creates the one contextual conversation of an object.
    pub async fn open_context(
        &self,
        me: &InfobaseActor,
        object_ref: &str,
        title: &str,
        hidden: bool,
    ) -> Result<Opened> {
        let lim = &self.cfg.limits;
        let object_ref = validate::text("object_ref", object_ref, lim.max_object_ref_chars)?;
        let title = validate::optional_text("title", title, lim.max_title_chars)?;
        let (id, created) = self
            .create(NewConversation {
                subscriber_id: me.subscriber_id,
                kind: ConversationKind::Context,
                title,
                hidden,
                infobase_id: Some(me.id),
                key: None,
                object_ref: Some(object_ref),
                created_by: None,
                members: Vec::new(),
            })
            .await?;
        let conversation = self.conversation_for_infobase(me, id).await?;
        Ok(Opened {
            conversation,
            created,
        })
    }

    /// The contextual conversation of an object, for a member of it.
    pub async fn context_for_user(
        &self,
        me: &UserActor,
        infobase: InfobaseId,
        object_ref: &str,
    ) -> Result<Conversation> {
        let id = self
            .store
            .context_id(infobase, object_ref)
            .await?
            .ok_or_else(|| Error::not_found("conversation"))?;
        self.require_member(me, id).await?;
        self.conversation_for_user(me, id).await
    }

    /// A member adds users to a group.
    pub async fn add_members_by_user(
        &self,
        me: &UserActor,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<Conversation> {
        self.check_users_count("user_ids", users.len())?;
        match self.member_meta(me, id).await?.kind {
            ConversationKind::Group => {}
            ConversationKind::Dialog => {
                return Err(Error::invalid("a dialog has exactly two members"))
            }
            ConversationKind::Context => {
                return Err(Error::access_denied(
                    "members of a contextual conversation are granted by its infobase",
                ))
            }
        }
        let committed = self
            .store
            .add_members(
                id,
                me.subscriber_id,
                users,
                self.cfg.limits.max_members,
                ChangedBy(Some(me.id())),
            )
            .await?;
        self.publish(committed);
        self.conversation_for_user(me, id).await
    }

    /// The infobase adds members; for a contextual conversation this is the
    /// grant that lets a user read and write it.
    pub async fn add_members_by_infobase(
        &self,
        me: &InfobaseActor,
        id: ConversationId,
        users: &[UserId],
    ) -> Result<Conversation> {
        self.check_users_count("user_ids", users.len())?;
        let view = self.infobase_view(me, id).await?;
        view.require_owner("grants and adds members")?;
        let conv = view.conversation;
        if conv.kind == ConversationKind::Dialog {
            return Err(Error::invalid("a dialog has exactly two members"));
        }
        let committed = self
            .store
            .add_members(
                conv.id,
                me.subscriber_id,
                users,
                self.cfg.limits.max_members,
                ChangedBy(None),
            )
            .await?;
        self.publish(committed);
        self.conversation_for_infobase(me, conv.id).await
    }

    /// A member leaves, or the creator of a group removes another member.
    /// Returns whether the user was a member.
    pub async fn remove_member_by_user(
        &self,
        me: &UserActor,
        id: ConversationId,
        user: UserId,
    ) -> Result<bool> {
        let meta = self.member_meta(me, id).await?;
        if user != me.id() {
            if meta.kind != ConversationKind::Group || meta.created_by != Some(me.id()) {
                return Err(Error::access_denied(
                    "only the creator of a group removes other members",
                ));
            }
        } else if meta.kind == ConversationKind::Dialog {
            return Err(Error::invalid("nobody leaves a dialog"));
        }
        Ok(
            match self
                .store
                .remove_member(id, user, ChangedBy(Some(me.id())))
                .await?
            {
                Some(committed) => {
                    self.publish(committed);
                    true
                }
                None => false,
            },
        )
    }

    /// The user leaves a group or a contextual conversation.
    pub async fn leave(&self, me: &UserActor, id: ConversationId) -> Result<()> {
        if self.member_meta(me, id).await?.kind == ConversationKind::Dialog {
            return Err(Error::invalid("nobody leaves a dialog"));
        }
        if let Some(committed) = self
            .store
            .remove_member(id, me.id(), ChangedBy(Some(me.id())))
            .await?
        {
            self.publish(committed);
        }
        Ok(())
    }

    /// The infobase removes a member (revokes a grant).
    pub async fn remove_member_by_infobase(
        &self,
        me: &InfobaseActor,
        id: ConversationId,
        user: UserId,
    ) -> Result<()> {
        let view = self.infobase_view(me, id).await?;
        view.require_owner("removes members")?;
        let conv = view.conversation;
        if conv.kind == ConversationKind::Dialog {
            return Err(Error::invalid("nobody leaves a dialog"));
        }
        match self
            .store
            .remove_member(conv.id, user, ChangedBy(None))
            .await?
        {
            Some(committed) => {
                self.publish(committed);
                Ok(())
            }
            None => Err(Error::not_found("member")),
        }
    }

    fn check_update(&self, c: &ConversationUpdate) -> Result<(Option<String>, Option<String>)> {
        if c.title.is_none() && c.description.is_none() && c.picture.is_none() {
            return Err(Error::invalid(
                "give title, description or picture to change",
            ));
        }
        let lim = &self.cfg.limits;
        let title = c
            .title
            .as_deref()
            .map(|t| validate::text("title", t, lim.max_title_chars))
            .transpose()?;
        let description = c
            .description
            .as_deref()
            .map(|d| validate::optional_text("description", d, lim.max_description_chars))
            .transpose()?;
        Ok((title, description))
    }

    /// The creator of a group renames it, changes its description or its
    /// picture (an image the creator uploaded to it).
    pub async fn update_conversation_by_user(
        &self,
        me: &UserActor,
        id: ConversationId,
        update: &ConversationUpdate,
    ) -> Result<Conversation> {
        let (title, description) = self.check_update(update)?;
        let meta = self.member_meta(me, id).await?;
        if meta.kind != ConversationKind::Group || meta.created_by != Some(me.id()) {
            return Err(Error::access_denied(
                "only the creator of a group changes it (the infobase changes its own)",
            ));
        }
        let change = ConversationChange {
            title: title.as_deref(),
            description: description.as_deref(),
            picture: update.picture,
            uploader: Some(me.id()),
        };
        let committed = self
            .store
            .update_conversation(id, &change, Some(me.id()))
            .await?;
        self.publish(committed);
        self.conversation_for_user(me, id).await
    }

    /// The owner infobase changes a conversation's title, description or
    /// picture (an image any member uploaded to it).
    pub async fn update_conversation_by_infobase(
        &self,
        me: &InfobaseActor,
        id: ConversationId,
        update: &ConversationUpdate,
    ) -> Result<Conversation> {
        let (title, description) = self.check_update(update)?;
        let view = self.infobase_view(me, id).await?;
        view.require_owner("changes its title, description and picture")?;
        let change = ConversationChange {
            title: title.as_deref(),
            description: description.as_deref(),
            picture: update.picture,
            uploader: None,
        };
        let committed = self.store.update_conversation(id, &change, None).await?;
        self.publish(committed);
        self.conversation_for_infobase(me, id).await
    }
}
