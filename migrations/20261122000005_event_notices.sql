-- Every committed event is announced by PostgreSQL itself, so that a node
-- learns of it even when the node that committed it died before publishing
-- on the bus, or the bus lost the envelope. One notice per statement (a
-- group commit is one statement), naming each conversation once with its
-- highest new seq: "conversation:seq,conversation:seq,...". NOTIFY is
-- transactional: listeners hear of a change only once it is committed, and
-- a rolled-back change is never announced. Payloads stay far below the
-- 8000-byte limit: at most 150 conversations (~45 bytes each) per notice.
CREATE FUNCTION parley_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('parley_events', string_agg(t.conversation_id::text || ':' || t.seq, ','))
    FROM (
        SELECT conversation_id, max(seq) AS seq,
               (row_number() OVER (ORDER BY conversation_id) - 1) / 150 AS chunk
        FROM new_events
        GROUP BY conversation_id
    ) t
    GROUP BY t.chunk;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION parley_events_notify();
