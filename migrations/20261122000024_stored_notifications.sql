-- Live notifications an infobase pushed while its user had no session:
-- kept (bounded per user, with expiry) and delivered at the next connect.
CREATE TABLE stored_notifications (
    id          bigserial PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX stored_notifications_user ON stored_notifications (user_id, id);
CREATE INDEX stored_notifications_expires ON stored_notifications (expires_at);
