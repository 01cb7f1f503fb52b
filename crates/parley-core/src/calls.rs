//! Audio and video calls: what the `call.*` frames carry. A call belongs to
//! one conversation and only its members take part; the media flows between
//! the browsers (peer to peer, through TURN when needed) and Parley relays
//! the signaling (SDP offers and answers, ICE candidates) between the
//! sessions in the call.

use crate::{CallId, ConversationId, SessionId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Media {
    Audio,
    Video,
}

impl Media {
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Audio => "audio",
            Media::Video => "video",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Started; the others' devices ring.
    Ringing,
    /// Someone answered.
    Active,
    Ended,
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered, then hung up.
    Completed,
    /// Nobody answered within `calls.ring_timeout_secs`.
    Missed,
    Declined,
    /// The caller gave up before an answer.
    Cancelled,
    /// The other user was in another call.
    Busy,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Missed => "missed",
            Outcome::Declined => "declined",
            Outcome::Cancelled => "cancelled",
            Outcome::Busy => "busy",
        }
    }
}

/// One user in a call, on one of its devices (session).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub user_id: UserId,
    pub session_id: SessionId,
    pub joined_at: DateTime<Utc>,
    /// Shares a screen now (an extra video track).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub screen: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub id: CallId,
    pub conversation_id: ConversationId,
    pub started_by: UserId,
    pub media: Media,
    /// Through the media server, for more than two (false: peer to peer).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group: bool,
    pub state: CallState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Who is in the call now.
    pub participants: Vec<Participant>,
}

/// A STUN or TURN server as `RTCPeerConnection` takes it
/// (`RTCIceServer`). TURN credentials are made per call and expire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// A group call's room on the media server (Janus VideoRoom), and what
/// lets a participant in: given only in the answers to the participants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// The Janus HTTP API URL the browser talks to (`…/janus`).
    pub server: String,
    pub room: u64,
    pub pin: String,
}

/// The answer to `call.start`, `call.accept` and `call.join`: the call and
/// how to reach the others (peer to peer, or the group call's room).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Joined {
    pub call: Call,
    pub ice_servers: Vec<IceServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<Room>,
}

/// What `call.signal` relays: an SDP description or an ICE candidate, as
/// the browser produced it (Parley checks size and shape, not content).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Value>,
}

/// The `data` of the system message a call leaves in the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call_id: CallId,
    pub media: Media,
    pub outcome: Outcome,
    pub started_by: UserId,
    /// From the answer to the end; absent when nobody answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_secs: Option<i64>,
}
