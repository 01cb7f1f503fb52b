//! Who acts: an authenticated user or infobase, with the subscriber that is
//! its tenant boundary. Every rule of the service takes one of these.

use crate::api::User;
use crate::{InfobaseId, SubscriberId, UserId};

/// A user authenticated by a live session token.
#[derive(Clone, Debug)]
pub struct UserActor {
    pub user: User,
    pub subscriber_id: SubscriberId,
}

impl UserActor {
    pub fn id(&self) -> UserId {
        self.user.id
    }
}

/// An infobase authenticated by its key.
#[derive(Clone, Copy, Debug)]
pub struct InfobaseActor {
    pub id: InfobaseId,
    pub subscriber_id: SubscriberId,
}
