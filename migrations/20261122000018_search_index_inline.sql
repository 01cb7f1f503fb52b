-- The search index's pending list (GIN `fastupdate`) made inserts cheap
-- until the list filled, then one insert merged 4 MB of it into the index
-- while holding the batch of sends behind it: under load the commit queue
-- stalled for hundreds of milliseconds (chat p99 2.3 s at 3 375 msg/s in
-- the benchmark, 147 ms without the index). Inserted entries now go straight
-- into the index: a little more work per message, no stalls.
ALTER INDEX messages_search SET (fastupdate = off);
