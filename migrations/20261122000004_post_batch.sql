-- Group commit in one round trip: a batch of members' sends, called as one
-- statement (its own transaction). Two steps, because each statement of a
-- function in READ COMMITTED takes a new snapshot:
--   1. lock the batch's conversations in id order (no deadlock between
--      batches of this node or another);
--   2. under the locks, read members and last_seq (the members at commit),
--      judge each send, number the accepted ones in the batch's order, and
--      write last_seq, the events and the messages.
-- Returns one row per send (kind 'send': idx, status, seq, message id) and
-- one per conversation (kind 'members': its members at commit).
-- Statuses: fresh, earlier (the id of the message with the same key),
-- missing (no such conversation), denied (not a member), foreign (not a
-- member, conversation of another subscriber), stranger (a recipient is not
-- a member).
CREATE FUNCTION parley_post_batch(
    p_conv uuid[], p_subscriber uuid[], p_author uuid[], p_id uuid[], p_text text[],
    p_data text[], p_actions text[], p_recipients text[], p_key text[],
    p_created timestamptz[], p_body text[]
) RETURNS TABLE (kind text, idx bigint, status text, seq bigint, id uuid, conv uuid, members uuid[])
LANGUAGE plpgsql
-- The same statement runs with arrays of every length: plan it once.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
BEGIN
    PERFORM 1 FROM conversations c WHERE c.id = ANY(p_conv) ORDER BY c.id FOR UPDATE;
    RETURN QUERY
    WITH input AS (
        SELECT * FROM unnest(p_conv, p_subscriber, p_author, p_id, p_text, p_data, p_actions,
                             p_recipients, p_key, p_created, p_body)
             WITH ORDINALITY AS t(conv, sub, author, id, text, data, actions, recipients, key,
                                  created, body, idx)
    ), convs AS (
        SELECT c.id, c.subscriber_id, c.last_seq,
               ARRAY(SELECT m.user_id FROM members m WHERE m.conversation_id = c.id
                     ORDER BY m.joined_at, m.user_id) AS members
        FROM conversations c WHERE c.id = ANY(p_conv)
    ), probed AS (
        SELECT i.*, c.id AS found, c.subscriber_id, c.last_seq, c.members,
               -- A correlated lookup: one index probe per send whatever plan
               -- is chosen (a join could scan every message).
               (SELECT e.id FROM messages e
                WHERE i.key IS NOT NULL AND e.conversation_id = i.conv
                  AND e.author_id = i.author AND e.idempotency_key = i.key) AS earlier
        FROM input i
        LEFT JOIN convs c ON c.id = i.conv
    ), judged AS (
        SELECT p.*,
               CASE
                   WHEN p.found IS NULL THEN 'missing'
                   WHEN NOT (p.author = ANY(p.members)) THEN
                       CASE WHEN p.subscriber_id = p.sub THEN 'denied' ELSE 'foreign' END
                   WHEN p.recipients IS NOT NULL AND NOT (p.recipients::uuid[] <@ p.members)
                       THEN 'stranger'
                   WHEN p.earlier IS NOT NULL THEN 'earlier'
                   ELSE 'fresh'
               END AS status
        FROM probed p
    ), numbered AS (
        SELECT j.*, CASE WHEN j.status = 'fresh' THEN
                   j.last_seq + row_number() OVER (PARTITION BY j.conv, j.status = 'fresh'
                                                   ORDER BY j.idx)
               END AS new_seq
        FROM judged j
    ), bump AS (
        UPDATE conversations c
        SET last_seq = (SELECT max(n.new_seq) FROM numbered n
                        WHERE n.conv = c.id AND n.status = 'fresh'),
            -- `last_activity` is indexed: changing it makes the update a
            -- non-HOT one (a new index entry in every index of the table).
            -- A second's precision is enough for ordering lists, so a busy
            -- conversation's row is rewritten in place between changes.
            last_activity = CASE WHEN c.last_activity < now() - interval '1 second'
                                 THEN now() ELSE c.last_activity END
        WHERE c.id = ANY(p_conv)
          AND EXISTS (SELECT 1 FROM numbered n WHERE n.conv = c.id AND n.status = 'fresh')
    ), ev AS (
        INSERT INTO events (conversation_id, seq, recipients, body)
        SELECT n.conv, n.new_seq, n.recipients::uuid[],
               jsonb_set(jsonb_set(n.body::jsonb, '{seq}', to_jsonb(n.new_seq)),
                         '{message,seq}', to_jsonb(n.new_seq))
        FROM numbered n WHERE n.status = 'fresh'
    ), msg AS (
        INSERT INTO messages (id, conversation_id, seq, author_id, text, data, actions,
                              recipients, idempotency_key, created_at)
        SELECT n.id, n.conv, n.new_seq, n.author, n.text, n.data::jsonb, n.actions::jsonb,
               n.recipients::uuid[], n.key, n.created
        FROM numbered n WHERE n.status = 'fresh'
    )
    SELECT 'send', n.idx, n.status, n.new_seq, COALESCE(n.earlier, n.id), n.conv, NULL::uuid[]
    FROM numbered n
    UNION ALL
    SELECT 'members', NULL, NULL, NULL, NULL, c.id, c.members FROM convs c;
END
$$;
