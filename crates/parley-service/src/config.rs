//! Configuration sections of the domain rules. The server composes them
//! into the whole file; `docs/configuration.md` documents every key.

use serde::{Deserialize, Serialize};

/// A value out of range; names the key.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigValueError {
    pub key: &'static str,
    pub message: String,
}

pub fn check(ok: bool, key: &'static str, message: &str) -> Result<(), ConfigValueError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigValueError {
            key,
            message: message.into(),
        })
    }
}

/// `[registration]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrationConfig {
    pub code_length: usize,
    pub code_ttl_secs: u64,
    pub max_attempts: u32,
    pub codes_per_email_per_hour: u32,
    pub requests_per_ip_per_hour: u32,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            code_length: 6,
            code_ttl_secs: 600,
            max_attempts: 5,
            codes_per_email_per_hour: 5,
            requests_per_ip_per_hour: 60,
        }
    }
}

/// `[auth]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Shortest lifetime a token may be issued with.
    pub min_token_ttl_secs: u64,
    /// Longest `Authorization` header or session token read; longer ones
    /// are refused unparsed.
    pub max_credential_bytes: usize,
    pub token_ttl_secs: u64,
    pub max_token_ttl_secs: u64,
    /// Lifetime of a WebSocket ticket (`POST /v1/ws-tickets`), single use.
    pub ticket_ttl_secs: u64,
    /// Lifetime of a signed file download link (`POST /v1/files/{id}/link`).
    pub link_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            min_token_ttl_secs: 60,
            max_credential_bytes: 1024,
            token_ttl_secs: 24 * 3600,
            max_token_ttl_secs: 30 * 24 * 3600,
            ticket_ttl_secs: 30,
            link_ttl_secs: 300,
        }
    }
}

impl RegistrationConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            (4..=10).contains(&self.code_length),
            "registration.code_length",
            "must be between 4 and 10",
        )?;
        check(
            (30..=86400).contains(&self.code_ttl_secs),
            "registration.code_ttl_secs",
            "must be between 30 and 86400",
        )?;
        check(
            (1..=100).contains(&self.max_attempts),
            "registration.max_attempts",
            "must be between 1 and 100",
        )?;
        check(
            self.codes_per_email_per_hour >= 1,
            "registration.codes_per_email_per_hour",
            "must be at least 1",
        )?;
        check(
            self.requests_per_ip_per_hour >= 1,
            "registration.requests_per_ip_per_hour",
            "must be at least 1",
        )
    }
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            (128..=65536).contains(&self.max_credential_bytes),
            "auth.max_credential_bytes",
            "must be between 128 and 65536",
        )?;
        check(
            self.min_token_ttl_secs >= 1,
            "auth.min_token_ttl_secs",
            "must be at least 1",
        )?;
        check(
            self.token_ttl_secs >= self.min_token_ttl_secs,
            "auth.token_ttl_secs",
            "must be at least auth.min_token_ttl_secs",
        )?;
        check(
            self.max_token_ttl_secs >= self.token_ttl_secs
                && self.max_token_ttl_secs <= 366 * 24 * 3600,
            "auth.max_token_ttl_secs",
            "must be at least auth.token_ttl_secs and at most 31622400 (366 days)",
        )?;
        check(
            (1..=60).contains(&self.ticket_ttl_secs),
            "auth.ticket_ttl_secs",
            "must be between 1 and 60",
        )?;
        check(
            (10..=3600).contains(&self.link_ttl_secs),
            "auth.link_ttl_secs",
            "must be between 10 and 3600",
        )
    }
}

/// `[limits]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub max_text_bytes: usize,
    pub max_data_bytes: usize,
    pub max_actions: usize,
    pub max_members: usize,
    pub max_title_chars: usize,
    pub max_object_ref_chars: usize,
    pub max_history_page: u32,
    pub typing_interval_ms: u64,
    /// Page size of `history` when the request names none.
    pub default_history_page: u32,
    /// Conversation lists: the page size when none is asked, and the most.
    pub default_conversation_page: u32,
    pub max_conversation_page: u32,
    /// User lists of an infobase: default and largest page.
    pub default_user_page: u32,
    pub max_user_page: u32,
    /// Most user ids in one request (`users.get`, `presence.get`,
    /// `members.add`, REST members).
    pub max_users_per_request: usize,
    /// Who may mention everyone with @all: `members` (any member),
    /// `creator` (a group's creator; the owner infobase over REST), `nobody`.
    pub mention_all: String,
    pub max_attachments: usize,
    pub max_idempotency_key_chars: usize,
    /// Caption and value of one action button.
    pub max_action_chars: usize,
    /// A conversation's `key` (set by its infobase).
    pub max_key_chars: usize,
    pub max_file_name_chars: usize,
    pub max_content_type_chars: usize,
    /// Messages one user may post per minute (on each node; WebSocket and
    /// REST posts as the user alike), a full minute's worth at once.
    pub messages_per_minute: u32,
    /// Messages one incoming webhook may post per minute (on each node).
    pub hook_messages_per_minute: u32,
    /// Live (not revoked) incoming webhooks one infobase may have.
    pub max_incoming_webhooks: u32,
    /// Notifications kept for a user with no session (the oldest go)…
    pub max_stored_notifications: u32,
    /// …for this long at most.
    pub stored_notification_ttl_secs: u64,
    /// Users (not deleted) one infobase may have.
    pub max_users_per_infobase: u64,
    /// Live (unexpired, unrevoked) session tokens one infobase may hold.
    pub max_live_tokens_per_infobase: u64,
    /// Longest search query.
    pub max_search_query_chars: usize,
    /// A conversation's description.
    pub max_description_chars: usize,
    /// Search results per page when none is asked, and the most.
    pub default_search_page: u32,
    pub max_search_page: u32,
    /// How many of the newest matches of a search are ranked (a common
    /// word matches a large part of the history; ranking all of it would
    /// take seconds).
    pub search_candidates: u32,
    /// Longest reaction emoji (bytes of UTF-8: a flag or a skin-toned
    /// family emoji takes 25 or more).
    pub max_reaction_bytes: usize,
    /// Different emoji on one message.
    pub max_reactions_per_message: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_text_bytes: 32 * 1024,
            max_data_bytes: 64 * 1024,
            max_actions: 20,
            max_members: 1000,
            max_title_chars: 256,
            max_object_ref_chars: 1024,
            max_history_page: 200,
            typing_interval_ms: 2000,
            default_history_page: 50,
            default_conversation_page: 50,
            max_conversation_page: 200,
            default_user_page: 100,
            max_user_page: 1000,
            max_users_per_request: 1000,
            mention_all: "members".into(),
            max_attachments: 20,
            max_idempotency_key_chars: 128,
            max_action_chars: 256,
            max_key_chars: 256,
            max_file_name_chars: 255,
            max_content_type_chars: 255,
            messages_per_minute: 600,
            hook_messages_per_minute: 60,
            max_incoming_webhooks: 100,
            max_stored_notifications: 100,
            stored_notification_ttl_secs: 7 * 24 * 3600,
            max_users_per_infobase: 100_000,
            max_live_tokens_per_infobase: 200_000,
            max_search_query_chars: 256,
            max_description_chars: 2000,
            default_search_page: 20,
            max_search_page: 100,
            search_candidates: 200,
            max_reaction_bytes: 32,
            max_reactions_per_message: 50,
        }
    }
}

impl LimitsConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            self.max_text_bytes >= 1,
            "limits.max_text_bytes",
            "must be at least 1",
        )?;
        check(
            self.max_data_bytes >= 2,
            "limits.max_data_bytes",
            "must be at least 2",
        )?;
        check(
            self.max_members >= 2,
            "limits.max_members",
            "must be at least 2",
        )?;
        check(
            self.messages_per_minute >= 1,
            "limits.messages_per_minute",
            "must be at least 1",
        )?;
        check(
            self.hook_messages_per_minute >= 1,
            "limits.hook_messages_per_minute",
            "must be at least 1",
        )?;
        check(
            self.max_incoming_webhooks >= 1,
            "limits.max_incoming_webhooks",
            "must be at least 1",
        )?;
        check(
            self.max_stored_notifications <= 10_000,
            "limits.max_stored_notifications",
            "must be at most 10000 (0 keeps none)",
        )?;
        check(
            self.stored_notification_ttl_secs >= 1,
            "limits.stored_notification_ttl_secs",
            "must be at least 1",
        )?;
        check(
            self.max_users_per_infobase >= 1,
            "limits.max_users_per_infobase",
            "must be at least 1",
        )?;
        check(
            (1..=4096).contains(&self.max_search_query_chars),
            "limits.max_search_query_chars",
            "must be between 1 and 4096",
        )?;
        check(
            (1..=1000).contains(&self.max_search_page)
                && (1..=self.max_search_page).contains(&self.default_search_page),
            "limits.max_search_page",
            "must be between 1 and 1000, and limits.default_search_page between 1 and it",
        )?;
        check(
            self.search_candidates >= self.max_search_page && self.search_candidates <= 100_000,
            "limits.search_candidates",
            "must be between limits.max_search_page and 100000",
        )?;
        check(
            (4..=256).contains(&self.max_reaction_bytes),
            "limits.max_reaction_bytes",
            "must be between 4 and 256",
        )?;
        check(
            self.max_reactions_per_message >= 1,
            "limits.max_reactions_per_message",
            "must be at least 1",
        )?;
        check(
            self.max_live_tokens_per_infobase >= 1,
            "limits.max_live_tokens_per_infobase",
            "must be at least 1",
        )?;
        check(
            self.max_title_chars >= 1,
            "limits.max_title_chars",
            "must be at least 1",
        )?;
        check(
            self.max_object_ref_chars >= 1,
            "limits.max_object_ref_chars",
            "must be at least 1",
        )?;
        check(
            (1..=10_000).contains(&self.max_history_page),
            "limits.max_history_page",
            "must be between 1 and 10000",
        )?;
        check(
            (1..=self.max_history_page).contains(&self.default_history_page),
            "limits.default_history_page",
            "must be between 1 and limits.max_history_page",
        )?;
        check(
            (1..=10_000).contains(&self.max_conversation_page),
            "limits.max_conversation_page",
            "must be between 1 and 10000",
        )?;
        check(
            (1..=self.max_conversation_page).contains(&self.default_conversation_page),
            "limits.default_conversation_page",
            "must be between 1 and limits.max_conversation_page",
        )?;
        check(
            ["members", "creator", "nobody"].contains(&self.mention_all.as_str()),
            "limits.mention_all",
            "must be members, creator or nobody",
        )?;
        check(
            (1..=100_000).contains(&self.max_user_page),
            "limits.max_user_page",
            "must be between 1 and 100000",
        )?;
        check(
            (1..=self.max_user_page).contains(&self.default_user_page),
            "limits.default_user_page",
            "must be between 1 and limits.max_user_page",
        )?;
        for (ok, key) in [
            (
                self.max_users_per_request >= 1,
                "limits.max_users_per_request",
            ),
            (
                self.max_idempotency_key_chars >= 1,
                "limits.max_idempotency_key_chars",
            ),
            (self.max_action_chars >= 1, "limits.max_action_chars"),
            (self.max_key_chars >= 1, "limits.max_key_chars"),
            (self.max_file_name_chars >= 1, "limits.max_file_name_chars"),
            (
                self.max_content_type_chars >= 3,
                "limits.max_content_type_chars",
            ),
        ] {
            check(ok, key, "must be at least 1 (3 for a content type)")?;
        }
        Ok(())
    }
}

/// `[maintenance]`: the background work of every node.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaintenanceConfig {
    /// Expired registration codes and tokens are swept this often…
    pub purge_every_secs: u64,
    /// …once they have been expired this long (kept for support questions).
    pub purge_keep_secs: u64,
    /// Abandoned uploads and files past retention are removed this often…
    pub files_sweep_every_secs: u64,
    /// …at most this many per sweep.
    pub files_sweep_batch: u32,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            purge_every_secs: 600,
            purge_keep_secs: 7 * 24 * 3600,
            files_sweep_every_secs: 60,
            files_sweep_batch: 500,
        }
    }
}

impl MaintenanceConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            self.purge_every_secs >= 1,
            "maintenance.purge_every_secs",
            "must be at least 1",
        )?;
        check(
            self.files_sweep_every_secs >= 1,
            "maintenance.files_sweep_every_secs",
            "must be at least 1",
        )?;
        check(
            (1..=100_000).contains(&self.files_sweep_batch),
            "maintenance.files_sweep_batch",
            "must be between 1 and 100000",
        )
    }
}

/// `[commit]`: group commit of message sends.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommitConfig {
    /// Batches that commit at once, each worker with a database connection
    /// of its own (besides `database.max_connections`). One gathers the
    /// largest batches, the cheapest for the database.
    /// A conversation always commits on the same one, so its sends keep
    /// their order.
    pub workers: usize,
    /// Most sends one transaction commits; what waits beyond that goes in
    /// the next one.
    pub batch_max: usize,
    /// Sends that may wait for each worker; a sender waits when it is full.
    pub queue: usize,
    /// While sends keep coming (the previous batch ended less than this
    /// ago), a batch starts only once its oldest send has waited this long
    /// or it is full: fewer, larger transactions, for a longer wait. A send
    /// after a quiet spell commits at once. 0 (the default): never wait.
    pub linger_ms: u64,
}

impl Default for CommitConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            batch_max: 256,
            queue: 4096,
            linger_ms: 0,
        }
    }
}

impl CommitConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            (1..=64).contains(&self.workers),
            "commit.workers",
            "must be between 1 and 64",
        )?;
        check(
            (1..=10_000).contains(&self.batch_max),
            "commit.batch_max",
            "must be between 1 and 10000",
        )?;
        check(
            (1..=1_000_000).contains(&self.queue),
            "commit.queue",
            "must be between 1 and 1000000",
        )?;
        check(
            self.linger_ms <= 1000,
            "commit.linger_ms",
            "must be between 0 and 1000",
        )
    }
}

/// `[recovery]`: how a node catches what the bus did not bring. Every
/// `grace_ms` it reads which conversations changed lately in PostgreSQL; a
/// `seq` that has not reached it one `grace_ms` later is read back and
/// delivered to the sessions here.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// How often to poll, and how long the bus may take to bring a
    /// committed event before it is read from PostgreSQL instead. Shorter heals sooner but reads events
    /// that were merely slow; a lost event reaches the sessions within about
    /// twice this.
    pub grace_ms: u64,
    /// Most events of one conversation read back at once; sessions further
    /// behind fill the rest from PostgreSQL themselves (`ws.resume_max_events`).
    pub max_events: u32,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            grace_ms: 500,
            max_events: 100,
        }
    }
}

impl RecoveryConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            (50..=60_000).contains(&self.grace_ms),
            "recovery.grace_ms",
            "must be between 50 and 60000",
        )?;
        check(
            (1..=10_000).contains(&self.max_events),
            "recovery.max_events",
            "must be between 1 and 10000",
        )
    }
}

/// `[calls]`: audio and video calls (docs/calls.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// A call nobody answers ends as missed after this long.
    pub ring_timeout_secs: u64,
    /// A participant whose connection dropped may come back (`call.join`)
    /// within this long; then it has left (a call between two ends).
    pub rejoin_grace_secs: u64,
    /// Largest `call.signal` payload (SDP or ICE candidate), serialized.
    pub max_signal_bytes: usize,
    /// Participants of a peer-to-peer call.
    pub p2p_max_participants: usize,
    /// STUN servers given to clients (`stun:host:3478`).
    pub stun_urls: Vec<String>,
    /// TURN servers (`turn:host:3478?transport=udp`, `turns:…`), with
    /// credentials made per call from `turn_secret`.
    pub turn_urls: Vec<String>,
    /// The secret shared with coturn (`use-auth-secret`,
    /// `static-auth-secret`); TURN credentials are
    /// `username = expiry:user_id`, `credential = base64(HMAC-SHA1(secret,
    /// username))`, so no long-lived TURN password reaches a browser.
    pub turn_secret: String,
    /// Lifetime of TURN credentials.
    pub turn_ttl_secs: u64,
    /// Janus HTTP API URLs (`http://janus1:8088/janus`), used round-robin
    /// for group calls; browsers reach the same URL. Empty: no group calls.
    pub janus_urls: Vec<String>,
    /// The VideoRoom plugin's `admin_key` (only who holds it creates rooms).
    pub janus_admin_key: String,
    /// Longest wait for one Janus request.
    pub janus_timeout_secs: u64,
    /// Participants of a group call (the room's publishers).
    pub group_max_participants: usize,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            ring_timeout_secs: 45,
            rejoin_grace_secs: 20,
            max_signal_bytes: 64 * 1024,
            p2p_max_participants: 2,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: String::new(),
            turn_ttl_secs: 3600,
            janus_urls: Vec::new(),
            janus_admin_key: String::new(),
            janus_timeout_secs: 5,
            group_max_participants: 12,
        }
    }
}

impl CallsConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            (5..=600).contains(&self.ring_timeout_secs),
            "calls.ring_timeout_secs",
            "must be between 5 and 600",
        )?;
        check(
            (1..=600).contains(&self.rejoin_grace_secs),
            "calls.rejoin_grace_secs",
            "must be between 1 and 600",
        )?;
        check(
            (256..=1024 * 1024).contains(&self.max_signal_bytes),
            "calls.max_signal_bytes",
            "must be between 256 and 1048576",
        )?;
        check(
            self.p2p_max_participants == 2,
            "calls.p2p_max_participants",
            "must be 2 (group calls need a media server)",
        )?;
        let url_ok = |u: &String, schemes: &[&str]| schemes.iter().any(|s| u.starts_with(s));
        check(
            self.stun_urls
                .iter()
                .all(|u| url_ok(u, &["stun:", "stuns:"])),
            "calls.stun_urls",
            "each must start with stun: or stuns:",
        )?;
        check(
            self.turn_urls
                .iter()
                .all(|u| url_ok(u, &["turn:", "turns:"])),
            "calls.turn_urls",
            "each must start with turn: or turns:",
        )?;
        check(
            self.turn_urls.is_empty() || self.turn_secret.len() >= 16,
            "calls.turn_secret",
            "must be set (16 characters at least) when calls.turn_urls is",
        )?;
        check(
            (60..=7 * 24 * 3600).contains(&self.turn_ttl_secs),
            "calls.turn_ttl_secs",
            "must be between 60 and 604800",
        )?;
        check(
            self.janus_urls
                .iter()
                .all(|u| u.starts_with("http://") || u.starts_with("https://")),
            "calls.janus_urls",
            "each must be an http:// URL of Janus's HTTP API",
        )?;
        check(
            self.janus_urls.iter().all(|u| u.starts_with("http://")),
            "calls.janus_urls",
            "https:// is not built in: reach Janus over a private network (browsers may use https through a proxy)",
        )?;
        check(
            (1..=120).contains(&self.janus_timeout_secs),
            "calls.janus_timeout_secs",
            "must be between 1 and 120",
        )?;
        check(
            (3..=100).contains(&self.group_max_participants),
            "calls.group_max_participants",
            "must be between 3 and 100",
        )
    }
}

/// `[feed]`: the infobase event feed (docs/integrations.md "Event feed").
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// How often a node tries to copy new events into the feeds (one node
    /// at a time does it); a long-poll sees an event within about this
    /// plus `poll_ms`.
    pub pump_ms: u64,
    /// How often a waiting long-poll looks whether the feed moved (one
    /// cheap query per node, whatever the number of waiters).
    pub poll_ms: u64,
    /// Conversations changed this long before the previous pump are looked
    /// at again (a transaction that commits late).
    pub lookback_secs: u64,
    /// Every watched conversation is looked at this often, whatever its
    /// activity time says.
    pub full_sweep_secs: u64,
    /// Feed events are kept this long; an older cursor gets
    /// `cursor_expired`. Must cover `webhooks.retry_for_secs`.
    pub retention_hours: u64,
    /// The longest `wait` of a long-poll.
    pub max_wait_secs: u64,
    /// Events per page when `limit` is not given, and the most allowed.
    pub default_page: u32,
    pub max_page: u32,
    /// Most events copied per conversation, and inbox rows moved, per pump.
    pub pump_max_rows: u32,
    /// Whether any infobase asked for presence in its feed is re-read this
    /// often (until then, presence changes write nothing).
    pub presence_refresh_secs: u64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            pump_ms: 250,
            poll_ms: 250,
            lookback_secs: 5,
            full_sweep_secs: 300,
            retention_hours: 72,
            max_wait_secs: 30,
            default_page: 100,
            max_page: 1000,
            pump_max_rows: 1000,
            presence_refresh_secs: 5,
        }
    }
}

impl FeedConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            (10..=60_000).contains(&self.pump_ms),
            "feed.pump_ms",
            "must be between 10 and 60000",
        )?;
        check(
            (10..=60_000).contains(&self.poll_ms),
            "feed.poll_ms",
            "must be between 10 and 60000",
        )?;
        check(
            (1..=3600).contains(&self.lookback_secs),
            "feed.lookback_secs",
            "must be between 1 and 3600",
        )?;
        check(
            (10..=86_400).contains(&self.full_sweep_secs),
            "feed.full_sweep_secs",
            "must be between 10 and 86400",
        )?;
        check(
            (1..=24 * 365).contains(&self.retention_hours),
            "feed.retention_hours",
            "must be between 1 and 8760",
        )?;
        check(
            (0..=600).contains(&self.max_wait_secs),
            "feed.max_wait_secs",
            "must be between 0 and 600",
        )?;
        check(
            (1..=10_000).contains(&self.max_page)
                && (1..=self.max_page).contains(&self.default_page),
            "feed.default_page",
            "default_page must be between 1 and max_page, max_page between 1 and 10000",
        )?;
        check(
            (1..=100_000).contains(&self.pump_max_rows),
            "feed.pump_max_rows",
            "must be between 1 and 100000",
        )?;
        check(
            (1..=3600).contains(&self.presence_refresh_secs),
            "feed.presence_refresh_secs",
            "must be between 1 and 3600",
        )
    }
}

/// `[webhooks]`: signed webhooks to infobases (docs/integrations.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Endpoints per infobase.
    pub max_endpoints: u32,
    /// Let endpoints point at private, loopback and link-local addresses
    /// (receivers inside the company network; tests). Off: refused when
    /// registered and when delivered.
    pub allow_private_targets: bool,
    /// One delivery attempt, connect to answer.
    pub timeout_secs: u64,
    /// Delivery workers per node (each works on one endpoint at a time).
    pub workers: u32,
    /// How often an idle node looks for due deliveries (one worker looks,
    /// and wakes another when it finds work).
    pub poll_ms: u64,
    /// The first retry waits this long, each next one twice as long…
    pub backoff_initial_ms: u64,
    /// …up to this.
    pub backoff_max_secs: u64,
    /// A delivery still failing this long after it was queued fails, and
    /// its endpoint is disabled with the reason.
    pub retry_for_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            max_endpoints: 10,
            allow_private_targets: false,
            timeout_secs: 10,
            workers: 4,
            poll_ms: 250,
            backoff_initial_ms: 1000,
            backoff_max_secs: 3600,
            retry_for_secs: 24 * 3600,
        }
    }
}

impl WebhooksConfig {
    pub fn validate(&self, feed: &FeedConfig) -> Result<(), ConfigValueError> {
        check(
            (1..=1000).contains(&self.max_endpoints),
            "webhooks.max_endpoints",
            "must be between 1 and 1000",
        )?;
        check(
            (1..=120).contains(&self.timeout_secs),
            "webhooks.timeout_secs",
            "must be between 1 and 120",
        )?;
        check(
            (1..=64).contains(&self.workers),
            "webhooks.workers",
            "must be between 1 and 64",
        )?;
        check(
            (10..=60_000).contains(&self.poll_ms),
            "webhooks.poll_ms",
            "must be between 10 and 60000",
        )?;
        check(
            (10..=3_600_000).contains(&self.backoff_initial_ms),
            "webhooks.backoff_initial_ms",
            "must be between 10 and 3600000",
        )?;
        check(
            self.backoff_max_secs >= 1 && self.backoff_max_secs * 1000 >= self.backoff_initial_ms,
            "webhooks.backoff_max_secs",
            "must be at least 1 and not below backoff_initial_ms",
        )?;
        check(
            self.retry_for_secs >= 1 && self.retry_for_secs <= feed.retention_hours * 3600,
            "webhooks.retry_for_secs",
            "must be at least 1 and within feed.retention_hours (a delivery needs its event)",
        )
    }
}

/// `[push]`: Web Push to users with no open session (docs/integrations.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Push at all (the VAPID key is made on first use either way).
    pub enabled: bool,
    /// The VAPID `sub`: how the push service reaches the operator
    /// (`mailto:` or `https:`).
    pub subject: String,
    /// Let subscriptions point at private and loopback addresses (tests;
    /// a push service inside the network). Off: such endpoints are refused.
    pub allow_private_targets: bool,
    /// One push request, connect to answer.
    pub timeout_secs: u64,
    /// How long a push service keeps a push for an offline browser (`TTL`).
    pub ttl_secs: u64,
    /// At most one push per conversation and user within this.
    pub coalesce_secs: u64,
    /// Browsers (subscriptions) per user.
    pub max_subscriptions_per_user: u32,
    /// Messages waiting for the push worker of a node; beyond, pushes are
    /// dropped (counted), never the send slowed.
    pub queue: usize,
    /// Users with a subscription are re-read this often (a browser that
    /// subscribed through another node is pushed to after at most this).
    pub refresh_secs: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            subject: "mailto:admin@localhost".into(),
            allow_private_targets: false,
            timeout_secs: 10,
            ttl_secs: 24 * 3600,
            coalesce_secs: 60,
            max_subscriptions_per_user: 10,
            queue: 10_000,
            refresh_secs: 10,
        }
    }
}

impl PushConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            self.subject.starts_with("mailto:") || self.subject.starts_with("https://"),
            "push.subject",
            "must be a mailto: or https: URL",
        )?;
        check(
            (1..=120).contains(&self.timeout_secs),
            "push.timeout_secs",
            "must be between 1 and 120",
        )?;
        check(
            (0..=28 * 24 * 3600).contains(&self.ttl_secs),
            "push.ttl_secs",
            "must be between 0 and 2419200",
        )?;
        check(
            self.coalesce_secs <= 86_400,
            "push.coalesce_secs",
            "must be at most 86400",
        )?;
        check(
            (1..=100).contains(&self.max_subscriptions_per_user),
            "push.max_subscriptions_per_user",
            "must be between 1 and 100",
        )?;
        check(
            (1..=1_000_000).contains(&self.queue),
            "push.queue",
            "must be between 1 and 1000000",
        )?;
        check(
            (1..=3600).contains(&self.refresh_secs),
            "push.refresh_secs",
            "must be between 1 and 3600",
        )
    }
}

/// `[digest]`: e-mail digests for users who stay offline (off by default
/// per subscriber; docs/integrations.md).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// A user offline this long (since its last session closed) with
    /// messages unread this long gets a digest of what it missed.
    pub delay_secs: u64,
    /// How often a node looks for users due a digest (one node at a time).
    pub every_secs: u64,
    /// Digests mailed per run at most.
    pub max_users_per_run: u32,
    /// Conversations in one digest, and unread lines shown of each.
    pub max_conversations: u32,
    pub lines_per_conversation: u32,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            delay_secs: 3600,
            every_secs: 60,
            max_users_per_run: 100,
            max_conversations: 10,
            lines_per_conversation: 3,
        }
    }
}

impl DigestConfig {
    pub fn validate(&self) -> Result<(), ConfigValueError> {
        check(
            (1..=30 * 86_400).contains(&self.delay_secs),
            "digest.delay_secs",
            "must be between 1 and 2592000",
        )?;
        check(
            (1..=86_400).contains(&self.every_secs),
            "digest.every_secs",
            "must be between 1 and 86400",
        )?;
        check(
            (1..=10_000).contains(&self.max_users_per_run),
            "digest.max_users_per_run",
            "must be between 1 and 10000",
        )?;
        check(
            (1..=100).contains(&self.max_conversations),
            "digest.max_conversations",
            "must be between 1 and 100",
        )?;
        check(
            (1..=20).contains(&self.lines_per_conversation),
            "digest.lines_per_conversation",
            "must be between 1 and 20",
        )
    }
}
