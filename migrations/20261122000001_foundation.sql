-- Foundation: subscribers, registration codes, infobases, users, session tokens.

CREATE TABLE subscribers (
    id          uuid PRIMARY KEY,
    email       text NOT NULL UNIQUE,          -- normalized: trimmed, lower-case
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A code is stored as HMAC-SHA256(salt, email || ':' || code); never in clear.
CREATE TABLE registration_codes (
    id          uuid PRIMARY KEY,
    email       text NOT NULL,
    salt        bytea NOT NULL,
    code_hash   bytea NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    client_addr text NOT NULL DEFAULT ''
);
CREATE INDEX registration_codes_email_created ON registration_codes (email, created_at DESC);
CREATE INDEX registration_codes_expires ON registration_codes (expires_at);

CREATE TABLE infobases (
    id               uuid PRIMARY KEY,
    subscriber_id    uuid NOT NULL REFERENCES subscribers (id),
    name             text NOT NULL,
    key_hash         bytea NOT NULL,           -- SHA-256 of the infobase key
    created_at       timestamptz NOT NULL DEFAULT now(),
    unregistered_at  timestamptz
);
CREATE INDEX infobases_subscriber ON infobases (subscriber_id);

CREATE TABLE users (
    id           uuid PRIMARY KEY,
    infobase_id  uuid NOT NULL REFERENCES infobases (id),
    external_id  text NOT NULL,
    name         text NOT NULL,
    full_name    text NOT NULL DEFAULT '',
    email        text NOT NULL DEFAULT '',
    phone        text NOT NULL DEFAULT '',
    picture      text NOT NULL DEFAULT '',
    bot          boolean NOT NULL DEFAULT false,
    locked       boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (infobase_id, external_id)
);

CREATE TABLE session_tokens (
    id           uuid PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE,        -- SHA-256 of the token
    user_id      uuid NOT NULL REFERENCES users (id),
    infobase_id  uuid NOT NULL REFERENCES infobases (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz
);
CREATE INDEX session_tokens_user ON session_tokens (user_id) WHERE revoked_at IS NULL;
CREATE INDEX session_tokens_expires ON session_tokens (expires_at);
