"""Checks deploy/monitoring offline: the Grafana dashboard is valid JSON
with a query in every panel, the alert rules are valid YAML in Prometheus'
rule-file shape, and every parley_ metric either names is one that
docs/operations.md documents (so a renamed metric breaks this check, not a
dashboard in production). Run with Debian's python3 (python3-yaml)."""

import json
import re
import sys

import yaml

ROOT = sys.argv[1] if len(sys.argv) > 1 else "."
doc = open(f"{ROOT}/docs/operations.md", encoding="utf-8").read()
documented = set(re.findall(r"^\| `(parley_[a-z_]+)` \|", doc, re.M))
if len(documented) < 20:
    sys.exit(f"docs/operations.md lists only {len(documented)} metrics")

used = set()


def metrics_of(expr):
    for name in re.findall(r"\bparley_[a-z_]+", expr):
        used.add(re.sub(r"_(bucket|sum|count)$", "", name))


dash = json.load(open(f"{ROOT}/deploy/monitoring/parley-dashboard.json", encoding="utf-8"))
for key in ("title", "uid", "panels", "schemaVersion"):
    if key not in dash:
        sys.exit(f"dashboard: no {key}")
for p in dash["panels"]:
    if not p.get("targets") or not all(t.get("expr") for t in p["targets"]):
        sys.exit(f"dashboard panel {p.get('title')!r} has no query")
    for t in p["targets"]:
        metrics_of(t["expr"])

rules = yaml.safe_load(open(f"{ROOT}/deploy/monitoring/parley-alerts.yml", encoding="utf-8"))
names = set()
for g in rules["groups"]:
    for r in g["rules"]:
        for key in ("alert", "expr", "for", "labels", "annotations"):
            if key not in r:
                sys.exit(f"alert {r.get('alert')!r}: no {key}")
        if r["labels"].get("severity") not in ("critical", "warning", "info"):
            sys.exit(f"alert {r['alert']}: severity critical|warning|info")
        if "summary" not in r["annotations"]:
            sys.exit(f"alert {r['alert']}: no summary")
        if r["alert"] in names:
            sys.exit(f"alert {r['alert']} twice")
        names.add(r["alert"])
        if r["expr"].count("(") != r["expr"].count(")"):
            sys.exit(f"alert {r['alert']}: unbalanced parentheses")
        metrics_of(r["expr"])

unknown = sorted(used - documented)
if unknown:
    sys.exit(f"metrics not documented in docs/operations.md: {unknown}")
print(f"deploy/monitoring: {len(dash['panels'])} panels, {len(names)} alerts, "
      f"{len(used)} metrics, all documented")
