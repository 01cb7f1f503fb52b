-- Answered buttons: every click of an action button (what the infobase
-- reads back), and the choice of a single-use question on its message.
CREATE TABLE action_invocations (
    id               bigserial PRIMARY KEY,
    message_id       uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          uuid NOT NULL REFERENCES users (id),
    value            text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX action_invocations_message ON action_invocations (message_id);
ALTER TABLE messages ADD COLUMN chosen jsonb;
