#!/usr/bin/python3
"""Sanity checks on one parley-loadgen JSON report, for smoke.sh.

Asserts the tools work and the numbers are sane (counts add up, percentiles
are ordered, nothing failed), never that anything is fast. Exits 1 with one
line per failed check.

  check_report.py REPORT.json --connections 10 [--traffic] [--acks] [--held N]
"""
import argparse
import json
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("report")
    p.add_argument("--connections", type=int, required=True)
    p.add_argument("--traffic", action="store_true",
                   help="messages were sent and must all arrive")
    p.add_argument("--acks", action="store_true", help="every send is acked")
    p.add_argument("--held", type=int, help="connections held at the end")
    p.add_argument("--watched", type=int, default=0,
                   help="processes with RSS/CPU figures")
    args = p.parse_args()
    with open(args.report) as f:
        r = json.load(f)
    failures = []

    def check(ok, what):
        if not ok:
            failures.append(what)

    num = lambda k: float(r.get(k, 0))
    check(r["connections_ready"] >= args.connections,
          f"connections_ready {r['connections_ready']} < {args.connections}")
    check(num("handshakes_per_second") > 0, "no handshakes per second")
    # A creation the generator asked for again ("..._retried") is counted in
    # the report but is not a failure; anything else is.
    errors = {k: v for k, v in (r.get("errors") or {}).items()
              if not k.endswith("_retried")}
    check(not errors, f"errors: {errors}")
    check(not r.get("closes"), f"unexpected closes: {r.get('closes')}")

    def latency_sane(name):
        s = r[name]
        check(int(s["count"]) > 0, f"{name}: no samples")
        check(0 <= s["p50_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["p999_ms"]
              <= s["max_ms"], f"{name}: percentiles out of order: {s}")
        check(s["max_ms"] < 30000, f"{name}: max {s['max_ms']} ms is absurd")

    latency_sane("handshake_latency")
    if args.traffic:
        sent, delivered = int(r["sent"]), int(r["delivered"])
        check(sent > 0, "nothing sent")
        check(delivered > 0, "nothing delivered")
        check(int(r["undelivered"]) == 0,
              f"{r['undelivered']} messages never arrived")
        check(num("delivered_per_second") > 0, "no delivery rate")
        latency_sane("end_to_end")
    if args.acks:
        check(int(r["acks"]) > 0, "no acks")
        latency_sane("ack_latency")
    if args.held is not None:
        check(r["connections_held"] >= args.held,
              f"held {r['connections_held']} < {args.held}")
    procs = r.get("processes", [])
    check(len(procs) >= args.watched,
          f"{len(procs)} watched processes reported, wanted {args.watched}")
    for proc in procs:
        check(int(proc["rss_end_kib"]) > 0, f"{proc['name']}: no RSS")
    for f in failures:
        print(f"check failed: {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
