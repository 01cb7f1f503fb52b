-- E-mail digests for users who stay offline: off by default per subscriber;
-- when a user's last session closed; how far each membership was mailed.
ALTER TABLE subscribers ADD COLUMN email_digest boolean NOT NULL DEFAULT false;
ALTER TABLE users ADD COLUMN last_seen_at timestamptz;
ALTER TABLE members ADD COLUMN digest_seq bigint NOT NULL DEFAULT 0;
