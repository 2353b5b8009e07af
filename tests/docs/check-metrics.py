#!/usr/bin/env python3
"""The metrics' documentation and dashboard against the code (issue 14).

a. Every metric the code names (a "nestor_..." string in broker/metrics.c
   or rdp-gateway/gwmetrics.c) has a row in docs/metrics.md, and every row
   there is a metric the code names.
b. Every query in docs/grafana/nestor.json and in docs/metrics.md's
   ```promql blocks parses (promtool check rules, the reference parser) and
   uses only metrics the code names.

Prints every problem and exits 1 if there is one.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

SOURCES = ["broker/metrics.c", "rdp-gateway/gwmetrics.c"]
NAME = re.compile(r"\bnestor_[a-z_]+\b")
SUFFIXES = ("_bucket", "_sum", "_count")


def base(name):
    for s in SUFFIXES:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    args = ap.parse_args()
    problems = []

    emitted = set()
    for rel in SOURCES:
        with open(os.path.join(args.src, rel)) as f:
            emitted |= set(re.findall(r'"(nestor_[a-z_]+)"', f.read()))
    if not emitted:
        problems.append("no metric names found in %s" % ", ".join(SOURCES))

    with open(os.path.join(args.src, "docs/metrics.md")) as f:
        doc = f.read()
    documented = set(re.findall(r"^\| `(nestor_[a-z_]+)` \|", doc, re.M))
    for n in sorted(emitted - documented):
        problems.append("docs/metrics.md: %s is exported but has no row" % n)
    for n in sorted(documented - emitted):
        problems.append("docs/metrics.md: %s has a row but no code exports it" % n)

    queries = []
    with open(os.path.join(args.src, "docs/grafana/nestor.json")) as f:
        dash = json.load(f)
    for p in dash["panels"]:
        for t in p.get("targets", []):
            queries.append(("dashboard panel '%s'" % p["title"], t["expr"]))
    for block in re.findall(r"```promql\n(.*?)```", doc, re.S):
        for line in block.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                queries.append(("docs/metrics.md", line.strip()))
    for where, q in queries:
        for n in set(NAME.findall(q)):
            if base(n) not in emitted and n not in emitted:
                problems.append("%s: %s uses %s, which no code exports" % (where, q, n))

    # promtool parses each query as a recording rule's expression
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("groups:\n  - name: docs\n    rules:\n")
        for i, (where, q) in enumerate(queries):
            f.write("      - record: docs:q%d\n        expr: %s\n" % (i, json.dumps(q)))
        rules = f.name
    try:
        r = subprocess.run(["promtool", "check", "rules", rules], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append("promtool check rules refused a query:\n" + r.stdout + r.stderr)
    except FileNotFoundError:
        problems.append("promtool not found (Debian's prometheus package; scripts/install-deps)")
    finally:
        os.unlink(rules)

    for p in problems:
        print("FAIL", p)
    if problems:
        return 1
    print("ok: %d metrics documented, %d queries parse" % (len(emitted), len(queries)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
