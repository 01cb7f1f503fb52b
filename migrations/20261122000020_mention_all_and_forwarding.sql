-- @all: a message that mentions every member who reads it (counted in each
-- one's unread mentions). Forwarding: a copy of a message in another
-- conversation carries where it came from (`forwarded`, shown to readers)
-- and the id of the original (`forwarded_from`, always the first message of
-- a chain), through which the readers of the copy may download the
-- original's attachments.
ALTER TABLE messages ADD COLUMN mention_all boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN forwarded jsonb;
ALTER TABLE messages ADD COLUMN forwarded_from uuid;
CREATE INDEX messages_forwarded_from ON messages (forwarded_from) WHERE forwarded_from IS NOT NULL;
