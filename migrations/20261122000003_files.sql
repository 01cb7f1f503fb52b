-- Files: metadata here, bytes in the storage (S3 bucket or local directory).

CREATE TABLE files (
    id               uuid PRIMARY KEY,
    subscriber_id    uuid NOT NULL REFERENCES subscribers (id),
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    owner_id         uuid NOT NULL REFERENCES users (id),
    name             text NOT NULL,
    content_type     text NOT NULL,
    size             bigint NOT NULL,             -- declared, then verified
    sha256           text NOT NULL,               -- hex, declared, then verified
    storage_key      text NOT NULL UNIQUE,
    state            text NOT NULL CHECK (state IN ('pending', 'uploaded', 'attached')),
    message_id       uuid REFERENCES messages (id) ON DELETE SET NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    uploaded_at      timestamptz,
    expires_at       timestamptz NOT NULL         -- a pending upload is removed after this
);
CREATE INDEX files_subscriber ON files (subscriber_id);
CREATE INDEX files_pending ON files (expires_at) WHERE state = 'pending';
CREATE INDEX files_created ON files (created_at);

ALTER TABLE messages ADD COLUMN attachments jsonb NOT NULL DEFAULT '[]';
