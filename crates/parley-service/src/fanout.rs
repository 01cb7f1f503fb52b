//! Live delivery of committed changes: one serialization per event, shared by
//! every recipient, handed to the bus.

use crate::push::PushTap;
use crate::Service;
use bytestring::ByteString;
use parley_bus::{Bus, Envelope};
use parley_core::protocol::{Event, ServerFrame};
use parley_core::{SessionId, UserId};
use parley_store::{Committed, StoredEvent};
use std::sync::Arc;

/// Serializes a frame once; every recipient shares the bytes.
pub fn frame_text(frame: &ServerFrame) -> ByteString {
    match serde_json::to_string(frame) {
        Ok(s) => ByteString::from(s),
        Err(e) => {
            tracing::error!(error = %e, "frame serialization failed");
            ByteString::from_static(
                "{\"type\":\"error\",\"code\":\"internal\",\"message\":\"serialization\"}",
            )
        }
    }
}

impl Service {
    /// Sends an event that is not part of a history (typing, presence, read,
    /// notification) to the sessions of `targets`.
    pub(crate) fn push(&self, targets: Vec<UserId>, event: Event) {
        if targets.is_empty() {
            return;
        }
        self.bus.publish(Arc::new(Envelope::live(
            targets,
            frame_text(&ServerFrame::Event(event)),
            None,
        )));
    }

    /// As [`Service::push`], to one session of `user` only.
    pub(crate) fn push_to_session(&self, user: UserId, session: SessionId, event: Event) {
        self.bus.publish(Arc::new(Envelope::live(
            vec![user],
            frame_text(&ServerFrame::Event(event)),
            Some(session),
        )));
    }

    /// Fans out what a change committed to the members at its commit.
    pub(crate) fn publish(&self, committed: Committed) {
        publish(self.bus.as_ref(), &self.push_tap, committed);
    }
}

/// Fans out what a change committed to the members at its commit, and
/// offers it to Web Push (for members with no session).
pub(crate) fn publish(bus: &dyn Bus, push: &PushTap, committed: Committed) {
    let Committed { events, members } = committed;
    for ev in events {
        push.offer(&ev, &members);
        publish_event(bus, ev, members.clone());
    }
}

pub(crate) fn publish_event(bus: &dyn Bus, ev: StoredEvent, targets: Vec<UserId>) {
    bus.publish(Arc::new(envelope(ev, targets)));
}

/// The envelope of a history event: serialized once for all its targets.
pub(crate) fn envelope(ev: StoredEvent, targets: Vec<UserId>) -> Envelope {
    let author = match &ev.event {
        Event::MessageCreated { message, .. } | Event::MessageEdited { message, .. } => {
            Some(message.author_id)
        }
        _ => None,
    };
    Envelope {
        targets,
        position: Some((ev.conversation_id, ev.seq)),
        recipients: ev.recipients,
        author,
        frame: frame_text(&ServerFrame::Event(ev.event)),
        resync: false,
        revoke: None,
        session: None,
    }
}
