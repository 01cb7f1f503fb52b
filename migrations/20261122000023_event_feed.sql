-- The infobase event feed (docs/integrations.md "Event feed") and the
-- outbox of signed webhooks.
--
-- Nothing here is written by the send path. One node at a time (an advisory
-- lock) "pumps": it copies the new events of watched conversations from
-- `events`, and the rows other transactions left in `feed_inbox`, into
-- `feed_events`. Because a single writer assigns `feed_events.id`, ids become
-- visible in order, so a reader that asks "after id N" never skips a row that
-- commits late — which a bigserial written by many transactions cannot
-- promise.

-- What an infobase asked its feed to carry beyond its bots' conversations.
CREATE TABLE feed_settings (
    infobase_id     uuid PRIMARY KEY REFERENCES infobases (id) ON DELETE CASCADE,
    -- Activity in the contextual conversations of its objects.
    contextual      boolean NOT NULL DEFAULT false,
    -- The highest feed id removed by retention: a cursor below it has lost
    -- events and must resync from history.
    purged_through  bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Which infobase hears which conversation, and how far the pump has copied.
-- Kept by triggers: a bot user joining or leaving, a contextual conversation
-- created for an infobase that asked for contextual activity.
CREATE TABLE feed_watches (
    conversation_id  uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    infobase_id      uuid NOT NULL REFERENCES infobases (id) ON DELETE CASCADE,
    pumped_seq       bigint NOT NULL,
    -- The infobase's bot users among the members.
    bots             int NOT NULL DEFAULT 0,
    contextual       boolean NOT NULL DEFAULT false,
    -- Set when the last reason to watch went away: events up to here still
    -- belong to the feed (the removal itself), later ones do not.
    until_seq        bigint,
    PRIMARY KEY (conversation_id, infobase_id)
);
CREATE INDEX feed_watches_infobase ON feed_watches (infobase_id);

-- Events that are not in a conversation's log (clicks, missed calls), left
-- by the transaction that made them; the pump moves them into the feed.
CREATE TABLE feed_inbox (
    id               bigserial PRIMARY KEY,
    infobase_id      uuid NOT NULL REFERENCES infobases (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    conversation_id  uuid,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE feed_events (
    id               bigserial PRIMARY KEY,
    infobase_id      uuid NOT NULL REFERENCES infobases (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    conversation_id  uuid,
    seq              bigint,
    body             jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feed_events_infobase ON feed_events (infobase_id, id);
CREATE INDEX feed_events_created ON feed_events (created_at);

-- Where the pump left off (one row).
CREATE TABLE feed_pump (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_run   timestamptz NOT NULL DEFAULT now(),
    last_sweep timestamptz NOT NULL DEFAULT now()
);
INSERT INTO feed_pump DEFAULT VALUES;

-- A bot user joining a conversation starts its infobase's watch at the
-- current last seq: the member.added event that follows is the first one
-- the feed carries.
CREATE FUNCTION feed_member_added() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ib uuid;
BEGIN
    SELECT infobase_id INTO ib FROM users WHERE id = NEW.user_id AND bot;
    IF ib IS NULL THEN RETURN NULL; END IF;
    INSERT INTO feed_watches (conversation_id, infobase_id, pumped_seq, bots)
    SELECT NEW.conversation_id, ib, c.last_seq, 1 FROM conversations c WHERE c.id = NEW.conversation_id
    ON CONFLICT (conversation_id, infobase_id)
    DO UPDATE SET bots = feed_watches.bots + 1, until_seq = NULL;
    RETURN NULL;
END $$;
CREATE TRIGGER feed_member_added AFTER INSERT ON members
    FOR EACH ROW EXECUTE FUNCTION feed_member_added();

-- The last bot leaving ends the watch after the next event (the removal,
-- appended after the member row is gone).
CREATE FUNCTION feed_member_removed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ib uuid;
BEGIN
    SELECT infobase_id INTO ib FROM users WHERE id = OLD.user_id AND bot;
    IF ib IS NULL THEN RETURN NULL; END IF;
    UPDATE feed_watches w SET bots = greatest(w.bots - 1, 0),
        until_seq = CASE WHEN w.bots <= 1 AND NOT w.contextual
                         THEN (SELECT c.last_seq + 1 FROM conversations c WHERE c.id = w.conversation_id)
                         ELSE w.until_seq END
    WHERE w.conversation_id = OLD.conversation_id AND w.infobase_id = ib;
    RETURN NULL;
END $$;
CREATE TRIGGER feed_member_removed AFTER DELETE ON members
    FOR EACH ROW EXECUTE FUNCTION feed_member_removed();

-- A contextual conversation of an infobase that asked for contextual
-- activity is watched from its first event.
CREATE FUNCTION feed_context_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'context' AND EXISTS (
        SELECT 1 FROM feed_settings s WHERE s.infobase_id = NEW.infobase_id AND s.contextual
    ) THEN
        INSERT INTO feed_watches (conversation_id, infobase_id, pumped_seq, contextual)
        VALUES (NEW.id, NEW.infobase_id, NEW.last_seq, true)
        ON CONFLICT (conversation_id, infobase_id) DO UPDATE SET contextual = true, until_seq = NULL;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER feed_context_created AFTER INSERT ON conversations
    FOR EACH ROW EXECUTE FUNCTION feed_context_created();

-- A call nobody answered: each person of the conversation who was rung
-- (not the caller, not a bot) is told to their infobase's feed.
CREATE FUNCTION feed_call_missed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.outcome = 'missed' AND OLD.outcome IS DISTINCT FROM 'missed' THEN
        INSERT INTO feed_inbox (infobase_id, kind, conversation_id, body)
        SELECT u.infobase_id, 'call.missed', NEW.conversation_id,
               jsonb_build_object('event', 'call.missed', 'call_id', NEW.id,
                                  'conversation_id', NEW.conversation_id, 'user_id', u.id,
                                  'started_by', NEW.started_by, 'media', NEW.media,
                                  'started_at', NEW.started_at, 'ended_at', NEW.ended_at)
        FROM members m JOIN users u ON u.id = m.user_id
        WHERE m.conversation_id = NEW.conversation_id AND m.user_id <> NEW.started_by
          AND NOT u.bot;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER feed_call_missed AFTER UPDATE OF outcome ON calls
    FOR EACH ROW EXECUTE FUNCTION feed_call_missed();

-- Signed webhooks: endpoints of an infobase and the outbox of deliveries.
-- The signing secret is not stored: it is derived from a server secret and
-- the endpoint's id and secret version (see parley-service webhooks.rs).
CREATE TABLE webhook_endpoints (
    id               uuid PRIMARY KEY,
    infobase_id      uuid NOT NULL REFERENCES infobases (id) ON DELETE CASCADE,
    url              text NOT NULL,
    kinds            text[] NOT NULL DEFAULT '{}',   -- empty = every kind
    secret_version   int NOT NULL DEFAULT 1,
    enabled          boolean NOT NULL DEFAULT true,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_infobase ON webhook_endpoints (infobase_id, created_at);

CREATE TABLE webhook_deliveries (
    id               bigserial PRIMARY KEY,
    endpoint_id      uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    feed_id          bigint NOT NULL REFERENCES feed_events (id) ON DELETE CASCADE,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed', 'dropped')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      int,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (endpoint_id, id) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_feed ON webhook_deliveries (feed_id);
