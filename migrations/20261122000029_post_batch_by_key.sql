-- parley_post_batch finds every row it touches by key: the batch's
-- conversations by id (three times: the lock, the members, the `last_seq`
-- update), their members by conversation, an earlier send by its
-- idempotency key. Its plan is generic (`force_generic_plan`) and made
-- once per connection, at its first call.
--
-- Made while `conversations` was small — a new installation, or the
-- benchmark's database of 100 conversations — that plan read the whole
-- table three times per call (`Seq Scan … Filter: id = ANY($1)`), and a
-- table updated at every send holds many row versions between vacuums:
-- 154 pages for 100 live rows after a few seconds of pgbench, every page
-- visited and every version checked three times per batch. Made while
-- `messages` was empty, the idempotency probe was a sequential scan of
-- `messages` for the life of the connection. Without sequential scans
-- the plan is the same whatever the tables held when it was made: index
-- probes, as many as the batch has sends (docs/benchmarks.md, session 18).
ALTER FUNCTION parley_post_batch(uuid[], uuid[], uuid[], uuid[], text[], text[], text[], text[],
                                 text[], timestamptz[], text[])
    SET enable_seqscan = off;
