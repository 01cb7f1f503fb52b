-- Audio and video calls (docs/calls.md): one live call per conversation at
-- most, its participants by user (one device each, the session that
-- answered), and the system messages calls leave in the history.
CREATE TABLE calls (
    id               uuid PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    started_by       uuid NOT NULL REFERENCES users (id),
    media            text NOT NULL CHECK (media IN ('audio', 'video')),
    state            text NOT NULL CHECK (state IN ('ringing', 'active', 'ended')),
    outcome          text CHECK (outcome IN ('completed', 'missed', 'declined', 'cancelled', 'busy')),
    started_at       timestamptz NOT NULL DEFAULT now(),
    answered_at      timestamptz,
    ended_at         timestamptz,
    CHECK ((state = 'ended') = (outcome IS NOT NULL))
);
CREATE UNIQUE INDEX calls_live_per_conversation ON calls (conversation_id) WHERE state <> 'ended';
CREATE INDEX calls_live ON calls (started_at) WHERE state <> 'ended';

CREATE TABLE call_participants (
    call_id     uuid NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id),
    session_id  uuid NOT NULL,
    joined_at   timestamptz NOT NULL DEFAULT now(),
    -- Set when its session closed without a hangup: it may come back
    -- within calls.rejoin_grace_secs.
    dropped_at  timestamptz,
    left_at     timestamptz,
    PRIMARY KEY (call_id, user_id)
);
CREATE INDEX call_participants_live_user ON call_participants (user_id) WHERE left_at IS NULL;

ALTER TABLE messages ADD COLUMN kind text NOT NULL DEFAULT 'text' CHECK (kind IN ('text', 'system'));
