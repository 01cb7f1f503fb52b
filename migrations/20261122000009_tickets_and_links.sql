-- Short-lived, single-use tickets that open a WebSocket from a browser
-- without a session token in the URL; and the cluster's own signing secret
-- (file download links), made once and shared by every node.
CREATE TABLE ws_tickets (
    ticket_hash  bytea PRIMARY KEY,            -- SHA-256 of the ticket
    token_id     uuid NOT NULL REFERENCES session_tokens (id) ON DELETE CASCADE,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX ws_tickets_expires ON ws_tickets (expires_at);

CREATE TABLE server_secrets (
    name        text PRIMARY KEY,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
