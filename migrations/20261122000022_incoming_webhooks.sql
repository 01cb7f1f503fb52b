-- Incoming webhooks: a URL with a secret token, bound to one conversation
-- and one bot author of an infobase; whoever holds it posts messages there
-- (CI systems, monitoring, scripts). Only the token's SHA-256 is kept; the
-- token is shown once. Revoked hooks stay for the record.
CREATE TABLE incoming_webhooks (
    id               uuid PRIMARY KEY,
    infobase_id      uuid NOT NULL REFERENCES infobases (id),
    conversation_id  uuid NOT NULL REFERENCES conversations (id),
    author_id        uuid NOT NULL REFERENCES users (id),
    name             text NOT NULL DEFAULT '',
    token_hash       bytea NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
CREATE INDEX incoming_webhooks_infobase ON incoming_webhooks (infobase_id, created_at);
