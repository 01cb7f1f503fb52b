-- Conversations, members with read markers, messages, and the per-conversation
-- event log that resume replays.

CREATE TABLE conversations (
    id             uuid PRIMARY KEY,
    subscriber_id  uuid NOT NULL REFERENCES subscribers (id),
    kind           text NOT NULL CHECK (kind IN ('group', 'dialog', 'context')),
    title          text NOT NULL DEFAULT '',
    hidden         boolean NOT NULL DEFAULT false,
    infobase_id    uuid REFERENCES infobases (id),
    key            text,
    object_ref     text,
    dialog_pair    text UNIQUE,               -- "smaller-uuid:larger-uuid" for dialogs
    created_by     uuid REFERENCES users (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    last_seq       bigint NOT NULL DEFAULT 0,  -- the row lock on it orders events
    last_activity  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'context') = (object_ref IS NOT NULL)),
    CHECK ((kind = 'dialog') = (dialog_pair IS NOT NULL))
);
CREATE UNIQUE INDEX conversations_key ON conversations (infobase_id, key) WHERE key IS NOT NULL;
CREATE UNIQUE INDEX conversations_object ON conversations (infobase_id, object_ref) WHERE object_ref IS NOT NULL;
CREATE INDEX conversations_subscriber_activity ON conversations (subscriber_id, last_activity DESC, id DESC);

CREATE TABLE members (
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    user_id          uuid NOT NULL REFERENCES users (id),
    read_seq         bigint NOT NULL DEFAULT 0,
    joined_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE messages (
    id               uuid PRIMARY KEY,
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              bigint NOT NULL,
    author_id        uuid NOT NULL REFERENCES users (id),
    text             text NOT NULL DEFAULT '',
    data             jsonb,
    actions          jsonb NOT NULL DEFAULT '[]',
    recipients       uuid[],
    idempotency_key  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    edited_at        timestamptz,
    deleted          boolean NOT NULL DEFAULT false,
    UNIQUE (conversation_id, seq)
);
CREATE UNIQUE INDEX messages_idempotency ON messages (conversation_id, author_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Everything that belongs to a conversation's history, in seq order: resume
-- replays these rows. `body` is the event as sent on the wire.
CREATE TABLE events (
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq              bigint NOT NULL,
    recipients       uuid[],                  -- NULL = every member
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq)
);
