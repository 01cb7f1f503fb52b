-- Web Push (RFC 8030/8291/8292): browsers' push subscriptions per user, what
-- each user wants pushed, and when a conversation last pushed to a user
-- (pushes are coalesced per conversation).
CREATE TABLE push_subscriptions (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    endpoint    text NOT NULL,
    p256dh      bytea NOT NULL,
    auth        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, endpoint)
);

-- all: every message; mentions: dialogs, @mentions and missed calls; none.
ALTER TABLE users ADD COLUMN push_level text NOT NULL DEFAULT 'mentions'
    CHECK (push_level IN ('all', 'mentions', 'none'));

CREATE TABLE push_coalesce (
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    last_sent_at     timestamptz NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
