-- The feed may carry its users' presence changes (opt-in).
ALTER TABLE feed_settings ADD COLUMN presence boolean NOT NULL DEFAULT false;
