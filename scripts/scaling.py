#!/usr/bin/env python3
"""Sizes a Parley deployment from the benchmark's per-unit costs and a
traffic model (docs/scaling.md explains every figure).

    python3 scripts/scaling.py                       # 100k, 1M, 10M users
    python3 scripts/scaling.py --users 250000 --msgs-per-hour 30

Every default is either measured (the `Standard set at 9cda1c8` table of
docs/benchmarks.md, 2 shared cores) or a stated assumption of the model;
change them with the options to fit your own measurements and traffic.
"""

import argparse
import math

# Measured per-unit costs (docs/benchmarks.md, standard set at 9cda1c8):
# chat 1 node at 3 375 msg/s: node 5.35 CPU-s, PostgreSQL 5.69 CPU-s in 10 s;
# fan-out 1 node at 777 198 deliveries/s: node 10.33 CPU-s in 10 s;
# chat 2 nodes at 5 063 msg/s: Redis 0.35 CPU-s in 10 s (2 subscribers).
MEASURED = {
    "node_us_per_delivery": 10.33e6 / 10 / 777_198,  # 1.33 us
    # The chat step's node CPU less its deliveries (10 members each).
    "node_us_per_message": 5.35e6 / 10 / 3375 - 10 * 10.33e6 / 10 / 777_198,
    "pg_us_per_message": 5.69e6 / 10 / 3375,  # 169 us
    "redis_us_per_message_per_subscriber": 0.35e6 / 10 / 5063 / 2,  # 35 us
    "kib_per_idle_session": 22.07,
    "connects_per_core_s": 4010 / 2,
}


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, nargs="*", default=[100_000, 1_000_000, 10_000_000],
                   help="connected users at the peak hour")
    p.add_argument("--msgs-per-hour", type=float, default=12,
                   help="messages each connected user sends in the peak hour (assumed: 12)")
    p.add_argument("--online-recipients", type=float, default=6,
                   help="mean members online to receive each message (assumed: 6)")
    p.add_argument("--peak-to-day", type=float, default=3,
                   help="peak-hour rate over the day's mean rate (assumed: 3)")
    p.add_argument("--bytes-per-message", type=float, default=1500,
                   help="PostgreSQL bytes per stored message: row, event, indexes (assumed: 1500)")
    p.add_argument("--kernel-kib-per-session", type=float, default=8,
                   help="kernel socket memory per idle WebSocket (assumed: 8)")
    p.add_argument("--node-cores", type=int, default=8)
    p.add_argument("--node-ram-gib", type=float, default=16)
    p.add_argument("--node-max-sessions", type=int, default=200_000,
                   help="sessions one node may hold (ws.max_connections; open-file limit)")
    p.add_argument("--pg-cores", type=int, default=32, help="cores of one PostgreSQL primary")
    p.add_argument("--pg-disk-tib", type=float, default=8, help="disk of one PostgreSQL server, TiB")
    p.add_argument("--retention-days", type=float, default=365, help="how long messages are kept")
    p.add_argument("--target-load", type=float, default=0.5,
                   help="share of CPU/RAM planned for the peak (headroom for failover)")
    p.add_argument("--redis-core-budget", type=float, default=0.5,
                   help="share of its one core a Redis shard may use")
    return p.parse_args()


def size(n, a):
    m = MEASURED
    sends = n * a.msgs_per_hour / 3600
    deliveries = sends * a.online_recipients
    # Nodes: the largest of memory, CPU and session count; plus one so that
    # losing a node leaves enough.
    ram_per_node = a.node_ram_gib * 1024 * 1024 * a.target_load  # KiB
    by_ram = n * (m["kib_per_idle_session"] + a.kernel_kib_per_session) / ram_per_node
    node_cpu = sends * m["node_us_per_message"] + deliveries * m["node_us_per_delivery"]
    by_cpu = node_cpu / 1e6 / (a.node_cores * a.target_load)
    by_sessions = n / a.node_max_sessions
    limits = {"memory": by_ram, "CPU": by_cpu, "sessions": by_sessions}
    bound = max(limits, key=limits.get)
    nodes = max(2, math.ceil(limits[bound]) + 1)
    # Redis, one shard with plain pub/sub: every node receives every message.
    redis_plain = sends * nodes * m["redis_us_per_message_per_subscriber"] / 1e6
    # Sharded pub/sub: a message reaches only the nodes holding its members.
    subscribers = min(nodes, a.online_recipients)
    redis_sharded = sends * subscribers * m["redis_us_per_message_per_subscriber"] / 1e6
    shards = max(1, math.ceil(redis_sharded / a.redis_core_budget))
    pg_cores = sends * m["pg_us_per_message"] / 1e6 / a.target_load
    gib_per_day = sends / a.peak_to_day * 86400 * a.bytes_per_message / 2**30
    kept_tib = gib_per_day * a.retention_days / 1024
    # A primary holds what it keeps at 70 % of its disk.
    primaries = max(1, math.ceil(pg_cores / a.pg_cores), math.ceil(kept_tib / (a.pg_disk_tib * 0.7)))
    reconnect_s = (n / nodes) / (m["connects_per_core_s"] * a.node_cores * (nodes - 1) / nodes) if nodes > 1 else 0
    first = []
    if redis_plain > a.redis_core_budget:
        first.append("Redis plain pub/sub ({:.1f} cores > {})".format(redis_plain, a.redis_core_budget))
    if pg_cores > a.pg_cores:
        first.append("one PostgreSQL primary's CPU ({:.0f} cores > {})".format(pg_cores, a.pg_cores))
    if kept_tib > a.pg_disk_tib * 0.7:
        first.append("one PostgreSQL server's disk ({:.0f} TiB kept > 70 % of {})".format(kept_tib, a.pg_disk_tib))
    return {
        "users": n, "sends": sends, "deliveries": deliveries, "nodes": nodes, "bound": bound,
        "redis_plain": redis_plain, "shards": shards, "pg_cores": pg_cores, "primaries": primaries,
        "gib_per_day": gib_per_day, "kept_tib": kept_tib, "reconnect_s": reconnect_s,
        "first": "; ".join(first) or "none at this size",
    }


def main():
    a = parse()
    print("per-unit costs (measured, docs/benchmarks.md):")
    for k, v in MEASURED.items():
        print("  {:40s} {:10.2f}".format(k, v))
    print()
    head = ("users", "msg/s", "deliveries/s", "nodes (bound)", "Redis plain cores", "sharded shards",
            "PG cores", "GiB/day", "TiB kept", "PG servers", "node-loss reconnect s")
    print(" | ".join(head))
    for n in a.users:
        r = size(n, a)
        print("{users:,} | {sends:,.0f} | {deliveries:,.0f} | {nodes} ({bound}) | {redis_plain:.2f} | {shards} | "
              "{pg_cores:.1f} | {gib_per_day:.1f} | {kept_tib:.1f} | {primaries} | {reconnect_s:.1f}".format(**r))
        print("    first bottleneck: " + r["first"])


if __name__ == "__main__":
    main()
