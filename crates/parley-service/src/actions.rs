//! Answered buttons: a reader clicks an action of a message; its author
//! (a bot or an application user) hears of it at once, and its infobase
//! reads the clicks back over REST.

use crate::{Error, Result, Service};
use parley_core::protocol::{ActionInvocation, Event, InvocationPage};
use parley_core::{validate, ConversationId, InfobaseActor, MessageId, UserActor};

impl Service {
    pub async fn invoke_action(
        &self,
        me: &UserActor,
        conversation: ConversationId,
        message: MessageId,
        value: &str,
    ) -> Result<ActionInvocation> {
        let value = validate::text("value", value, self.cfg.limits.max_action_chars)?;
        self.require_member(me, conversation).await?;
        let done = self
            .store
            .invoke_action(conversation, message, me.id(), &value)
            .await?;
        if let Some(c) = done.committed {
            self.publish(c);
        }
        self.push(
            vec![done.author],
            Event::ActionInvoked {
                invocation: done.invocation.clone(),
            },
        );
        Ok(done.invocation)
    }

    /// Clicks on buttons of the infobase's users' messages after `after`.
    pub async fn action_invocations(
        &self,
        me: &InfobaseActor,
        after: Option<i64>,
        limit: Option<u32>,
    ) -> Result<InvocationPage> {
        let lim = &self.cfg.limits;
        let limit = limit.unwrap_or(lim.default_history_page);
        if !(1..=lim.max_history_page).contains(&limit) {
            return Err(Error::invalid(format!(
                "limit: must be between 1 and {} (limits.max_history_page)",
                lim.max_history_page
            )));
        }
        let invocations = self
            .store
            .action_invocations(me.id, after.unwrap_or(0).max(0), i64::from(limit))
            .await?;
        let next_cursor = invocations.last().map(|i| i.id);
        Ok(InvocationPage {
            invocations,
            next_cursor,
        })
    }
}
