-- Emoji reactions: one per user per emoji per message; each change is an
-- event with its own seq (reaction.added / reaction.removed).
CREATE TABLE reactions (
    message_id  uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id),
    emoji       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, user_id, emoji)
);
