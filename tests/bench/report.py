#!/usr/bin/python3
"""Writes docs/benchmarks.md from one run of tests/bench/run.sh.

  report.py WORK_DIR ANALYSIS.md [PREVIOUS.md] > docs/benchmarks.md

WORK_DIR holds machine.txt, commands.tsv and one parley-loadgen JSON report per
run (ID.json; idle and hold runs are split over processes as ID.pN.json /
ID.gN.json). ANALYSIS.md is the hand-written part (where time and memory go,
from profiles), appended verbatim. PREVIOUS.md, given when the run reran only
some sections (`run.sh --only`), is the document it replaces: the sections and
target rows this run did not produce are carried over from it, each marked
with the date and commit of the run that measured it.
"""
import glob
import json
import math
import os
import re
import sys

TARGETS = ("parley", "relay", "nats")
NAMES = {
    "parley": "Parley (gateway + service, persisted + acked)",
    "relay": "(a) raw websocketpp relay",
    "nats": "(b) nats-server 2.9 WebSocket",
}


# Gateway + service CPU per delivered 1:1 message at the maximum when issue
# 19's work started (docs/benchmarks.md of 2026-11-24), in microseconds.
START_CPU_US = 49.0

def load(work, run_id):
    path = os.path.join(work, run_id + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_parts(work, run_id):
    parts = []
    for path in sorted(glob.glob(os.path.join(work, run_id + ".[pg]*.json"))):
        with open(path) as f:
            parts.append(json.load(f))
    return parts


def proc(report, name):
    for p in report.get("processes", []):
        if p["name"] == name:
            return p
    return None


def fmt(x, digits=0):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.{digits}f}"


def server_cpu(report):
    parts = []
    for p in report.get("processes", []):
        parts.append(f"{p['name']} {p['cpu_percent']:.0f}%")
    return ", ".join(parts) or "n/a"


def lat(s):
    return (f"{s['p50_ms']:.2f} / {s['p90_ms']:.2f} / {s['p99_ms']:.2f} / "
            f"{s['p999_ms']:.2f} / {s['max_ms']:.2f}")


def problems(r):
    out = []
    if r.get("errors"):
        out.append("errors " + ", ".join(f"{k}={v}" for k, v in
                                          sorted(r["errors"].items())))
    if r.get("closes"):
        out.append("closes " + ", ".join(f"{k}={v}" for k, v in
                                          sorted(r["closes"].items())))
    if int(r.get("undelivered", 0)):
        out.append(f"undelivered {r['undelivered']}")
    return "; ".join(out) or "none"


# The measured sections, in document order; the rest (Machine, Targets,
# notes, commands) always describe this run.
SECTIONS = (
    "1:1 pairs, open loop (maximum throughput)",
    "Against a durable peer: JetStream, and CPU per delivered message",
    "Latency at half of Parley's maximum",
    "Handshakes",
    "Memory per idle connection (one server process)",
    "Concurrent connections over several gateways, one service",
    "Group fan-out",
    "Scaled out: 2 gateways x 2 replicas on PostgreSQL",
)
CARRIED = "*Not rerun by this run: carried over from the run of "


def split_sections(lines):
    """{heading: lines under it} for every `## ` heading."""
    out, current = {}, None
    for line in lines:
        if line.startswith("## "):
            current = line[3:].strip()
            out[current] = []
        elif current is not None:
            out[current].append(line)
    return out


def previous_document(path):
    """(sections, target rows by name, "date, commit") of PREVIOUS.md."""
    if not path or not os.path.exists(path):
        return {}, {}, ""
    with open(path) as f:
        sections = split_sections(f.read().split("\n"))
    when, cpu = "", ""
    for line in sections.get("Machine", []):
        m = re.match(r"\| Date, commit \| (.*) \|$", line)
        if m:
            when = m.group(1)
        m = re.match(r"\| CPU \| (.*) \|$", line)
        if m:
            cpu = m.group(1)
    if cpu:
        when += f" on {cpu}"
    rows = {}
    for line in sections.get("Targets", []):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("Target", "---"):
            rows[cells[0]] = cells
    return sections, rows, when


def merge_carried(out, previous, when):
    """Inserts, in document order, the SECTIONS `out` lacks and `previous`
    has, each marked with the run it comes from (kept if already marked)."""
    have = split_sections(out)
    result = list(out)
    for i, name in enumerate(SECTIONS):
        if name in have or name not in previous:
            continue
        body = list(previous[name])
        while body and not body[-1].strip():
            body.pop()
        if not any(line.startswith(CARRIED) for line in body):
            body = ["", f"{CARRIED}{when}; that run's load and build are in "
                    "docs/benchmarks.md as committed with it (git history), "
                    "not in the Machine table above.*"] + body
        block = [f"## {name}"] + body + [""]
        # Before the first later section present, else before Targets.
        later = [f"## {n}" for n in SECTIONS[i + 1:]] + ["## Targets"]
        at = next((k for k, line in enumerate(result)
                   if line.strip() in later), len(result))
        result[at:at] = block
    return result


KINDS = (("gateway", "gateway"), ("replica", "replica"), ("service", "service"),
         ("postgres", "PostgreSQL (postmaster and backends)"),
         ("nats", "nats-server (bus)"))


def cpu_by_kind(r):
    """{kind: (CPU seconds in the window, instances)} over the watched
    processes; gateway0, gateway1... count as `gateway`."""
    out = {}
    for p in r.get("processes", []):
        kind = re.sub(r"\d+$", "", p["name"])
        sec, n = out.get(kind, (0.0, 0))
        out[kind] = (sec + float(p.get("cpu_seconds", 0)), n + 1)
    return out


def us_per_delivery(r, seconds):
    d = r["delivered_per_second"] * r["duration_seconds"]
    return seconds / d * 1e6 if d else float("nan")


def histogram_means(path):
    """{histogram: (sum, count)} of the store's commit histograms in a
    scraped /metrics file."""
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"parley_service_store_(append_seconds|"
                         r"commit_batch_size|commit_seconds)_(sum|count) "
                         r"(\S+)$", line.strip())
            if m:
                s, c = out.get(m.group(1), (0.0, 0.0))
                if m.group(2) == "sum":
                    s = float(m.group(3))
                else:
                    c = float(m.group(3))
                out[m.group(1)] = (s, c)
    return out


def commit_table(w, work, runs):
    """The group-commit figures each service process exported over a run."""
    rows = []
    for label, run_id in runs:
        for path in sorted(glob.glob(os.path.join(work, run_id +
                                                  ".*.metrics"))):
            who = os.path.basename(path)[len(run_id) + 1:-len(".metrics")]
            rows.append((label, who, histogram_means(path)))
    if not rows:
        return
    w("### Group commit, from each service process's /metrics\n")
    w("Over the whole run (user setup, warm-up, window and drain): "
      "transactions committed, write operations per transaction, BEGIN to "
      "durable COMMIT per transaction, and an append's time from being "
      "submitted to its commit callback (queueing behind earlier batches "
      "included).\n")
    w("| Run | process | transactions | ops per transaction | commit ms | "
      "append ms |")
    w("|---|---|---:|---:|---:|---:|")

    def mean(h, key, scale=1.0):
        s, c = h.get(key, (0.0, 0.0))
        return f"{s / c * scale:.2f}" if c else "n/a"

    for label, who, h in rows:
        w(f"| {label} | {who} | {fmt(h.get('commit_seconds', (0, 0))[1])} | "
          f"{mean(h, 'commit_batch_size')} | "
          f"{mean(h, 'commit_seconds', 1e3)} | "
          f"{mean(h, 'append_seconds', 1e3)} |")
    w("")


def pg_waits_table(w, work, run_id, window="1:1 cluster window"):
    """What PostgreSQL's busy backends were doing, sampled in the window."""
    path = os.path.join(work, run_id + ".pgwaits")
    if not os.path.exists(path):
        return
    counts = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                counts[line.strip()] = counts.get(line.strip(), 0) + 1
    total = sum(counts.values())
    if not total:
        return
    w(f"### What PostgreSQL's backends were doing ({window})\n")
    w("`pg_stat_activity` sampled every ~0.1 s from one extra session: "
      "state and wait event of every backend of the database that was not "
      "idle outside a transaction. `idle in transaction ClientRead` is a "
      "backend inside a batch's transaction waiting for its replica's next "
      "statement; `Lock:...` is one replica's batch waiting for rows the "
      "other's holds; `IO:WALSync`/`WALWrite` is the commit's fsync; `CPU` "
      "is running.\n")
    w("| backend state and wait | samples | share |")
    w("|---|---:|---:|")
    for what, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        w(f"| {what} | {n} | {n / total:.0%} |")
    w("")


def scaled_out(w, targets, one_pairs, cl_pairs, one_fan, cl_fan, machine,
               work):
    cl_pairs1 = load(work, "pairs_max_cluster1")
    cl_base = load(work, "pairs_max_cluster-baseline")
    w("## Scaled out: 2 gateways x 2 replicas on PostgreSQL\n")
    w("The cluster of docs/scaling.md on this one machine: "
      f"{machine.get('postgres') or 'PostgreSQL'} (`fsync=on`, "
      "`synchronous_commit=on`, `max_connections=200`, everything else "
      "default, data in /tmp), core nats-server between the replicas, two "
      "parley-service replicas (`--store=postgres://... --nats=nats://... "
      "--replica_id=...`) and two gateways, each given both replicas "
      "(`--service_address=a,b`). The load generator spreads its connections "
      "over the two gateways (connection i on gateway i mod 2), so the two "
      "members of every pair sit on different gateways, and the gateways' "
      "rendezvous placement puts about half of the pairs' sessions on "
      "different replicas (those messages cross NATS). Same flags, counts "
      "and window as the one-box rows (one gateway, one parley-service on "
      "SQLite, from the sections above) they sit beside; every server "
      "process's CPU is measured over the window, PostgreSQL's as the "
      "postmaster's whole process tree.\n")
    w("| Shape | delivered msgs/s | acks/s | e2e latency ms p50 / p90 / p99 "
      "/ p99.9 / max | server CPU (sum, % of a core) | loadgen CPU | "
      "problems |")
    w("|---|---:|---:|---|---:|---:|---|")

    def row(label, r):
        if not r:
            w(f"| {label} | not run | | | | | |")
            return
        total = sum(p["cpu_percent"] for p in r.get("processes", []))
        w(f"| {label} | {fmt(r['delivered_per_second'])} | "
          f"{fmt(r['acks_per_second'])} | {lat(r['end_to_end'])} | "
          f"{total:.0f}% | {r['loadgen']['cpu_percent']:.0f}% | "
          f"{problems(r)} |")

    row("1:1 pairs, one box (SQLite)", one_pairs)
    row("1:1 pairs, cluster (PostgreSQL)", cl_pairs)
    if cl_base:
        row("1:1 pairs, cluster, baseline binaries", cl_base)
    if cl_pairs1:
        row("1:1 pairs, 2 gateways x 1 replica (PostgreSQL)", cl_pairs1)
    row("fan-out, one box (SQLite)", one_fan)
    row("fan-out, cluster (PostgreSQL)", cl_fan)
    w("")
    if one_pairs and cl_pairs and one_pairs["delivered_per_second"]:
        ratio = (cl_pairs["delivered_per_second"] /
                 one_pairs["delivered_per_second"])
        met = ratio >= 1.0
        w(f"- **1:1, cluster / one box: {ratio:.2f}x** (target >= 1x the "
          "SQLite path's persisted+acked throughput): "
          f"**{'met' if met else 'NOT met'}**.")
        targets.append(("scaled-out 1:1 persisted+acked throughput vs one "
                        "box (SQLite)", f"{ratio:.2f}x", ">= 1x", met))
    if cl_base and cl_pairs and cl_base["delivered_per_second"]:
        ratio = (cl_pairs["delivered_per_second"] /
                 cl_base["delivered_per_second"])
        w(f"- 1:1 cluster, these binaries / the baseline binaries "
          f"(`--baseline`, same run): {ratio:.2f}x.")
    if one_pairs and cl_pairs1 and one_pairs["delivered_per_second"]:
        ratio = (cl_pairs1["delivered_per_second"] /
                 one_pairs["delivered_per_second"])
        w(f"- 1:1, 2 gateways x 1 replica on PostgreSQL / one box: "
          f"{ratio:.2f}x.")
    if one_fan and cl_fan and one_fan["delivered_per_second"]:
        ratio = (cl_fan["delivered_per_second"] /
                 one_fan["delivered_per_second"])
        w(f"- Fan-out deliveries, cluster / one box: {ratio:.2f}x.")
    w("")

    w("### CPU per delivered message, by process kind\n")
    w("CPU seconds each kind of process spent in the window (summed over "
      "its instances) divided by the messages delivered in the window, in "
      "microseconds, then the number of processes and their CPU in % of one "
      "core. A 1:1 message is delivered once, a fan-out message once per "
      "member: the fan-out figures are per delivery.\n")
    runs = [("1:1 one box", one_pairs), ("1:1 cluster", cl_pairs),
            ("1:1 cluster, baseline", cl_base),
            ("1:1, 1 replica", cl_pairs1), ("fan-out one box", one_fan),
            ("fan-out cluster", cl_fan)]
    runs = [(n, r) for n, r in runs if r]
    w("| Process kind | " + " | ".join(n for n, _ in runs) + " |")
    w("|---|" + "---:|" * len(runs))
    by = [(r, cpu_by_kind(r)) for _, r in runs]
    for kind, label in KINDS:
        if not any(kind in k for _, k in by):
            continue
        cells = []
        for r, k in by:
            if kind not in k:
                cells.append("")
                continue
            sec, n = k[kind]
            pct = 100 * sec / r["duration_seconds"]
            cells.append(f"{us_per_delivery(r, sec):.1f} us ({n} x, "
                         f"{pct:.0f}%)")
        w(f"| {label} | " + " | ".join(cells) + " |")
    cells = [f"**{us_per_delivery(r, sum(v[0] for v in k.values())):.1f} us**"
             for r, k in by]
    w("| **all servers** | " + " | ".join(cells) + " |")
    cells = [f"{us_per_delivery(r, float(r['loadgen']['cpu_seconds'])):.1f} us"
             for r, _ in by]
    w("| load generator | " + " | ".join(cells) + " |")
    w("")
    commit_table(w, work, [("1:1 one box", "pairs_max_parley"),
                           ("1:1 cluster", "pairs_max_cluster"),
                           ("1:1 cluster, baseline",
                            "pairs_max_cluster-baseline"),
                           ("1:1, 1 replica", "pairs_max_cluster1"),
                           ("fan-out cluster", "fanout_cluster")])
    pg_waits_table(w, work, "pairs_max_cluster")
    pg_waits_table(w, work, "pairs_max_cluster-baseline",
                   "1:1 cluster window, baseline binaries")

    if not cl_pairs:
        return
    per = {kind: us_per_delivery(cl_pairs, sec)
           for kind, (sec, _) in cpu_by_kind(cl_pairs).items()}
    g, rep = per.get("gateway"), per.get("replica")
    if not g or not rep:
        return
    pg, bus = per.get("postgres", 0.0), per.get("nats", 0.0)
    total = sum(per.values())
    lg_us = us_per_delivery(cl_pairs,
                            float(cl_pairs["loadgen"]["cpu_seconds"]))
    w("### What each added gateway and replica buys on more cores\n")
    w(f"From the 1:1 cluster row: a delivered message costs {g:.1f} us of "
      f"gateway CPU, {rep:.1f} us of replica CPU, {pg:.1f} us of "
      f"PostgreSQL CPU and {bus:.1f} us of nats-server CPU ({total:.1f} us "
      f"of server CPU in all; the load generator adds {lg_us:.1f} us). "
      f"Here the whole cluster and the generator share "
      f"{machine.get('cores')} cores, so the row above is what this "
      "machine's cores allow, not a ceiling of the design.\n")
    w("An estimate for a deployment where every process has a core of its "
      "own and the clients run elsewhere:\n")
    w(f"- **Each added gateway** (one core) adds about 1 s / {g:.1f} us = "
      f"**{fmt(1e6 / g)} msgs/s** of gateway capacity (a message costs "
      "CPU in the sender's gateway and in the recipient's; the figure is "
      "their sum, which is what one more core of gateways buys).")
    w(f"- **Each added replica** (one core) adds about 1 s / {rep:.1f} us "
      f"= **{fmt(1e6 / rep)} msgs/s** of replica capacity, at the "
      "cross-replica share measured here (about half of the messages). "
      "With N replicas about 1 - 1/N of the messages cross NATS and every "
      "replica reads the one event subject, so a replica's cost per "
      "message creeps up with N and nats-server's grows about N-fold "
      f"({bus:.1f} us here at N = 2): the replica figure holds for a "
      "handful of replicas, not for dozens.")
    w(f"- **PostgreSQL** spent {pg:.1f} us of CPU per message"
      + (f": one core of it per ~{fmt(1e6 / pg)} msgs/s" if pg else "") +
      ". Each replica writes through one connection, so through one "
      "backend process: its commit path can use at most one core of "
      "PostgreSQL per replica. (The pgbench figure in issue 16, ~73k "
      "rows/s from one connection in 100-row transactions, is a lighter "
      "transaction than Parley's: see the notes below.)")
    waits = os.path.join(work, "pairs_max_cluster.pgwaits")
    lines = [x.strip() for x in open(waits)] if os.path.exists(waits) else []
    lines = [x for x in lines if x]
    locked = sum(1 for x in lines if " Lock:" in x)
    if lines and locked / len(lines) >= 0.2:
        other = (f"; on one replica the same 1:1 run delivered "
                 f"{fmt(cl_pairs1['delivered_per_second'])} msgs/s against "
                 f"{fmt(cl_pairs['delivered_per_second'])} on two"
                 if cl_pairs1 else "")
        w(f"- **But today a second replica does not add commit throughput**: "
          f"{locked / len(lines):.0%} of the sampled states of PostgreSQL's "
          "busy backends were row-lock waits (table above): a batch holds "
          "its recipients' inbox counters (`users.inbox_head`) from its "
          "first round trip to COMMIT, and when the pairs span replicas the "
          "replicas' batches share users, so they commit one after the "
          f"other{other}. Until batches of different replicas stop sharing "
          "counter rows, the replica figure above is CPU headroom, not "
          "throughput.")
    caps = [1e6 / g, 1e6 / rep] + ([1e6 / pg] if pg else [])
    cap = min(caps)
    w(f"- So, counting CPU only, each gateway + replica added with a core "
      "each (and a core of PostgreSQL for the replica's writer) adds about "
      f"min({', '.join(fmt(c) for c in caps)}) = **{fmt(cap)} msgs/s**: a "
      f"2 x 2 cluster on 6 cores of its own about {fmt(2 * cap)} msgs/s. "
      "The lock waits above come first while batches of different "
      "replicas share counter rows.\n")
    w("Assumptions: the CPU per message stays what it is at this load "
      "(batching in the gateways' links and in the replicas' commit "
      "pipeline makes it cheaper under more load; on this machine, where 2 "
      "cores are shared by every process, context switches make it "
      "dearer); clients spread evenly over gateways and sessions over "
      "replicas; the network between machines adds latency, not CPU; "
      "memory and file descriptors are not the bound (see the connection "
      "sections).\n")


# Parley beside a durable peer, at the maximum and at half of Parley's: run id
# suffix -> label.
DURABLE = (
    ("parley", "Parley, SQLite synchronous=FULL (fsync, then ack: the default)"),
    ("parley-normal", "Parley, `--sqlite_synchronous=NORMAL` (no fsync per "
     "commit)"),
    ("parley-baseline", "Parley baseline binaries (`--baseline`), FULL"),
    ("jetstream", "NATS JetStream 2.9, file storage (ack before any fsync)"),
)


def server_us(r):
    """CPU microseconds of the server processes per delivered message."""
    seconds = sum(float(p.get("cpu_seconds", 0)) for p in r.get("processes", []))
    return us_per_delivery(r, seconds)


def durable_peers(w, work, machine, targets):
    rows = [(mode, label, id_, load(work, f"pairs_{mode}_{id_}"))
            for mode in ("max", "half") for id_, label in DURABLE]
    if not any(r for *_, r in rows):
        return
    w("## Against a durable peer: JetStream, and CPU per delivered message\n")
    w("Same connections, pairs and payloads as above, at the maximum (open "
      "loop) and at half of Parley's maximum (the same offered rate for "
      "every row). JetStream: one stream `PARLEY` (file storage, subjects "
      "`u.<user>`), an ephemeral push consumer per connection filtered on "
      "its own subject with explicit acks; a send is a publish acked by "
      "JetStream's PubAck, a delivery is acked back. **What the acks mean "
      "differs**: nats-server 2.9's file store acks once the message is "
      "written to the page cache and fsyncs every 2 minutes (2.9 has no "
      "option to sync before the ack), so a power loss can lose acked "
      "messages; Parley's default acks after the commit's fsync. The "
      "`NORMAL` row is Parley without the fsync per commit (WAL; durable "
      "across a process crash, not a power loss), the like-for-like row. "
      "*CPU/msg* is microseconds of CPU of all the server's processes "
      "(from /proc) per delivered message, *loadgen/msg* the generator's.\n")
    if machine.get("baseline"):
        w(f"Baseline binaries: `{machine['baseline']}`.\n")
    w("| Load | Target | delivered msgs/s | acks/s | CPU/msg | loadgen/msg "
      "| e2e ms p50 / p90 / p99 / p99.9 / max | problems |")
    w("|---|---|---:|---:|---:|---:|---|---|")
    for mode, label, _, r in rows:
        if not r:
            continue
        load_name = "maximum" if mode == "max" else "half"
        lg_us = us_per_delivery(r, float(r["loadgen"]["cpu_seconds"]))
        w(f"| {load_name} | {label} | {fmt(r['delivered_per_second'])} | "
          f"{fmt(r['acks_per_second'])} | {server_us(r):.1f} us | "
          f"{lg_us:.1f} us | {lat(r['end_to_end'])} | {problems(r)} |")
    w("")
    got = {(mode, id_): r for mode, _, id_, r in rows if r}
    js = got.get(("max", "jetstream"))
    for id_, what, goal in (("parley", "Parley (fsync)", 1.0),
                            ("parley-normal", "Parley NORMAL", None)):
        p = got.get(("max", id_))
        if not (p and js and js["delivered_per_second"]):
            continue
        ratio = p["delivered_per_second"] / js["delivered_per_second"]
        w(f"- **{what} / JetStream: {ratio:.2f}x**" +
          (f" (target >= {goal:.1f}x)" if goal else ""))
        if goal:
            targets.append(("1:1 persisted+acked vs JetStream", f"{ratio:.2f}x",
                            f">= {goal:.1f}x", ratio >= goal))
    p_max, p_half = got.get(("max", "parley")), got.get(("half", "parley"))
    if p_max and p_half:
        a, b = server_us(p_max), server_us(p_half)
        w(f"- Parley CPU per message: {a:.1f} us at the maximum, {b:.1f} us "
          "at half (target: no more at half than at the maximum)")
        targets.append(("CPU/msg at half <= at max", f"{b:.1f} vs {a:.1f} us",
                        "<=", b <= a))
    base = got.get(("max", "parley-baseline"))
    if p_max and base:
        a, b = server_us(base), server_us(p_max)
        w(f"- Against the baseline binaries in this run: CPU per message "
          f"{b:.1f} us vs {a:.1f} us ({b / a:.2f}x), throughput "
          f"{p_max['delivered_per_second'] / base['delivered_per_second']:.2f}x")
    if p_max:
        # Issue 19: half of the figure at the start of that work, measured
        # in the same run when --baseline gives those binaries.
        start, where = ((server_us(base), "the baseline's in this run")
                        if base else (START_CPU_US, "at the start of issue 19"))
        cpu = server_us(p_max)
        targets.append((f"gateway + service CPU per 1:1 message at the "
                        f"maximum (half of {start:.1f} us, {where})",
                        f"{cpu:.1f} us", f"<= {start / 2:.1f} us",
                        cpu <= start / 2))
    w("")


def main():
    work, analysis = sys.argv[1], sys.argv[2]
    previous, previous_targets, previous_when = previous_document(
        sys.argv[3] if len(sys.argv) > 3 else None)
    machine = {}
    with open(os.path.join(work, "machine.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            machine[k] = v
    commands = []
    if os.path.exists(os.path.join(work, "commands.tsv")):
        with open(os.path.join(work, "commands.tsv")) as f:
            commands = [line.rstrip("\n").split("\t", 1) for line in f]
    failed = []
    if os.path.exists(os.path.join(work, "failed.txt")):
        failed = open(os.path.join(work, "failed.txt")).read().split()

    out = []
    w = out.append
    w("# Benchmarks: Parley, a raw websocketpp relay and nats-server\n")
    w("Generated by `tests/bench/run.sh" +
      (" --quick" if machine.get("quick") == "1" else "") +
      "` (issue 7); do not edit by hand: rerun the script. The load "
      "generator is `parley-loadgen` (`tools/loadgen/`), the same binary and "
      "traffic shape for every target, on the same machine as the servers.\n")
    if machine.get("complete") != "1":
        w("**Partial report**: the suite had not finished when this was "
          "written; sections that are missing did not run.\n")
    if machine.get("quick") == "1":
        w("**This is a `--quick` run** (reduced connection counts and "
          "durations): its figures are not the full suite's.\n")
    w("## Machine\n")
    w("| | |\n|---|---|")
    w(f"| CPU | {machine.get('cores')} cores, {machine.get('cpu')} |")
    mem = int(machine.get("memory_kib", "0")) / 1024 / 1024
    w(f"| Memory | {mem:.1f} GiB |")
    w(f"| Kernel / OS | {machine.get('kernel')} / {machine.get('os')} |")
    w(f"| Open files (hard) | {machine.get('nofile_hard')} per process |")
    w(f"| Load average (1/5/15 min) | start {machine.get('loadavg_start')}, "
      f"end {machine.get('loadavg_end')} |")
    w(f"| Date, commit | {machine.get('date')}, `{machine.get('commit')}` |")
    w(f"| nats-server | {machine.get('nats')} |")
    if machine.get("postgres"):
        w(f"| PostgreSQL | {machine.get('postgres')} |")
    w(f"| Binaries | `{machine.get('bin')}`, {machine.get('build', 'n/a')} |\n")
    w("The load generator, the servers under test and anything else running "
      "share the same cores: a load average above the core count means the "
      "measured programs were competing for CPU.\n")
    if previous and machine.get("only"):
        w(f"This run reran only `{machine['only']}`; the sections it did not "
          f"rerun are carried over from the previous document and say so.\n")

    targets = []  # (target, measured, goal, met)

    # 1:1 maximum.
    maxes = {t: load(work, f"pairs_max_{t}") for t in TARGETS}
    if any(maxes.values()):
        w("## 1:1 pairs, open loop (maximum throughput)\n")
        any_r = next(r for r in maxes.values() if r)
        w(f"{any_r['connections_requested']} connections in pairs, "
          f"{any_r['inflight']} undelivered messages in flight per "
          f"connection, {any_r['payload_bytes']}-byte texts, "
          f"{any_r['duration_seconds']:.0f} s window after warm-up. A message "
          "counts when the peer connection receives it; Parley's messages are "
          "also stored and acknowledged before they count as acked.\n")
        w("| Target | delivered msgs/s | acks/s | e2e latency ms p50 / p90 / "
          "p99 / p99.9 / max | server CPU | server CPU/msg | loadgen CPU | "
          "problems |")
        w("|---|---:|---:|---|---|---:|---:|---|")
        for t in TARGETS:
            r = maxes[t]
            if not r:
                w(f"| {NAMES[t]} | not run | | | | | | |")
                continue
            w(f"| {NAMES[t]} | {fmt(r['delivered_per_second'])} | "
              f"{fmt(r['acks_per_second']) if t == 'parley' else 'n/a'} | "
              f"{lat(r['end_to_end'])} | {server_cpu(r)} | "
              f"{server_us(r):.1f} us | "
              f"{r['loadgen']['cpu_percent']:.0f}% | {problems(r)} |")
        proto = load(work, "pairs_max_parley-proto")
        if proto:
            w(f"| Parley, binary subprotocol `parley.v1.proto` | "
              f"{fmt(proto['delivered_per_second'])} | "
              f"{fmt(proto['acks_per_second'])} | {lat(proto['end_to_end'])} | "
              f"{server_cpu(proto)} | {server_us(proto):.1f} us | "
              f"{proto['loadgen']['cpu_percent']:.0f}% | {problems(proto)} |")
        w("")
        p, a, b = (maxes[t] and maxes[t]["delivered_per_second"] for t in TARGETS)
        if p and a:
            ratio = p / a
            w(f"- **Parley / (a) relay: {ratio:.1%}** (target >= 50%)")
            targets.append(("1:1 throughput vs raw relay", f"{ratio:.1%}",
                            ">= 50%", ratio >= 0.5))
        if p and b:
            ratio = p / b
            w(f"- **Parley / (b) nats-server: {ratio:.1%}** (target >= 100%)")
            targets.append(("1:1 throughput vs nats-server", f"{ratio:.1%}",
                            ">= 100%", ratio >= 1.0))
        w("")

    durable_peers(w, work, machine, targets)

    # Half rate latency.
    halves = {t: load(work, f"pairs_half_{t}") for t in TARGETS}
    if any(halves.values()):
        any_r = next(r for r in halves.values() if r)
        w("## Latency at half of Parley's maximum\n")
        w(f"Offered {fmt(any_r['offered_rate'])} msgs/s in total (open-loop "
          "schedule, paced every 0.5 ms, round-robin over the senders), same "
          "connections as above.\n")
        w("| Target | delivered msgs/s | e2e latency ms p50 / p90 / p99 / "
          "p99.9 / max | ack latency ms p50 / p90 / p99 / p99.9 / max | "
          "server CPU | server CPU/msg | problems |")
        w("|---|---:|---|---|---|---:|---|")
        for t in TARGETS:
            r = halves[t]
            if not r:
                continue
            w(f"| {NAMES[t]} | {fmt(r['delivered_per_second'])} | "
              f"{lat(r['end_to_end'])} | "
              f"{lat(r['ack_latency']) if t == 'parley' else 'n/a'} | "
              f"{server_cpu(r)} | {server_us(r):.1f} us | {problems(r)} |")
        w("")
        if halves["parley"]:
            p99 = halves["parley"]["end_to_end"]["p99_ms"]
            targets.append(("p99 e2e latency at half max", f"{p99:.2f} ms",
                            "<= 5 ms", p99 <= 5))
            targets.append(("p99 e2e latency at half max (issue 19)",
                            f"{p99:.2f} ms", "<= 10 ms", p99 <= 10))
        if halves["parley"] and halves["parley"]["delivered_per_second"] < \
                0.9 * halves["parley"]["offered_rate"]:
            w("Parley did not keep up with the offered rate in this run, "
              "so its latency here includes queueing.\n")

    # Handshakes.
    hs = {t: load(work, f"handshake_{t}") for t in TARGETS}
    churn = {t: load(work, f"churn_{t}") for t in TARGETS}
    if any(hs.values()) or any(churn.values()):
        w("## Handshakes\n")
        w("*Connect*: N connections opened as fast as the server takes them "
          "(1024 handshakes in progress at a time); a handshake ends when the "
          "connection is usable (Parley: `welcome` received after `?token=` "
          "authentication; NATS: `PONG` after `CONNECT`+`SUB`; relay: the "
          "relay's notice that the pair's other member is connected too). "
          "*Churn*: connection slots that connect, "
          "authenticate, close and reconnect for the whole window, spread "
          "over 8 source addresses.\n")
        w("| Target | connect: ready / N | handshakes/s | handshake ms p50 / "
          "p90 / p99 / p99.9 / max | churn handshakes/s | churn ms p50 / p99 "
          "| problems |")
        w("|---|---:|---:|---|---:|---|---|")
        for t in TARGETS:
            h, c = hs[t], churn[t]
            if not h and not c:
                continue
            w(f"| {NAMES[t]} | "
              f"{h['connections_ready'] if h else 'n/a'} / "
              f"{h['connections_requested'] if h else 'n/a'} | "
              f"{fmt(h['handshakes_per_second']) if h else 'n/a'} | "
              f"{lat(h['handshake_latency']) if h else 'n/a'} | "
              f"{fmt(c['handshakes_per_second']) if c else 'n/a'} | "
              + (f"{c['handshake_latency']['p50_ms']:.2f} / "
                 f"{c['handshake_latency']['p99_ms']:.2f}" if c else "n/a")
              + f" | {problems(h) if h else ''} {problems(c) if c else ''} |")
        w("")
        best = max([r["handshakes_per_second"] for r in
                    (hs["parley"], churn["parley"]) if r] or [0])
        if hs["parley"] or churn["parley"]:
            targets.append(("authenticated handshakes/s", fmt(best),
                            ">= 5,000", best >= 5000))

    # Idle memory.
    idle = {t: load_parts(work, f"idle_{t}") for t in TARGETS}
    if any(idle.values()):
        w("## Memory per idle connection (one server process)\n")
        w("| Target | connections held | server RSS before | server RSS "
          "holding | KiB per connection | problems |")
        w("|---|---:|---:|---:|---:|---|")
        for t in TARGETS:
            parts = idle[t]
            if not parts:
                continue
            held = sum(r["connections_held"] for r in parts)
            base_path = os.path.join(work, f"idle_{t}.baseline")
            base = int(open(base_path).read().strip() or 0) \
                if os.path.exists(base_path) else 0
            ends = [int(p["rss_end_kib"]) for r in parts
                    for p in r.get("processes", [])]
            end = max(ends) if ends else 0
            per = (end - base) / held if held else float("nan")
            probs = "; ".join(problems(r) for r in parts)
            w(f"| {NAMES[t]} | {held:,} | {base:,} KiB | {end:,} KiB | "
              f"{per:.1f} | {probs} |")
            if t == "parley":
                goal_ok = held >= 19000 and per <= 8
                targets.append(("one gateway holds >= 19,000 authenticated",
                                f"{held:,}", ">= 19,000", held >= 19000))
                targets.append(("gateway RSS per idle connection",
                                f"{per:.1f} KiB at {held:,}",
                                "<= 8 KiB at 19,000", goal_ok))
        w("\nRSS is the server's VmRSS before the first connection and at the "
          "end of the hold (the highest value the generator processes saw), "
          "divided by the connections held.\n")

    # 100k hold.
    hold = load_parts(work, "hold_parley")
    if hold:
        held = sum(r["connections_held"] for r in hold)
        asked = sum(r["connections_requested"] for r in hold)
        rate = sum(r["handshakes_per_second"] for r in hold)
        w("## Concurrent connections over several gateways, one service\n")
        w(f"{len(hold)} gateways, one generator process per gateway "
          "(each spreading its connections over 4 source addresses), one "
          "parley-service.\n")
        w("| Gateway | held / asked | handshakes/s | gateway RSS end | "
          "service RSS end | problems |")
        w("|---|---:|---:|---:|---:|---|")
        for i, r in enumerate(hold):
            g, s = proc(r, "gateway"), proc(r, "service")
            w(f"| {i} | {r['connections_held']:,} / "
              f"{r['connections_requested']:,} | "
              f"{fmt(r['handshakes_per_second'])} | "
              f"{fmt(int(g['rss_end_kib'])) if g else 'n/a'} KiB | "
              f"{fmt(int(s['rss_end_kib'])) if s else 'n/a'} KiB | {problems(r)} |")
        w(f"| **total** | **{held:,} / {asked:,}** | {fmt(rate)} | | | |\n")
        starts = [int(r.get("window_start_unix_ms", 0)) for r in hold]
        ends = [int(r.get("window_end_unix_ms", 0)) for r in hold]
        overlap = (min(ends) - max(starts)) / 1000 if all(starts) else None
        if overlap is None:
            w("These reports carry no window times (a generator older than "
              "this report), so whether the holds overlapped is unknown.\n")
        elif overlap > 0:
            w(f"Every generator held its connections at once for "
              f"{overlap:.1f} s (their hold windows overlap), so the total "
              "was concurrent.\n")
        else:
            w("The generators' hold windows did NOT all overlap: the total "
              "above was not held concurrently.\n")
            held = 0
        targets.append(("concurrent connections across gateways",
                        f"{held:,}", ">= 100,000", held >= 100000))
        targets.append((f"authenticated handshakes/s, {len(hold)} gateways "
                        "connecting at once (sum of per-gateway rates)",
                        fmt(rate), ">= 5,000", rate >= 5000))

    # Fan-out.
    fan = {t: load(work, f"fanout_{t}") for t in TARGETS}
    if any(fan.values()):
        w("## Group fan-out\n")
        w("One sender, the group's other members receive; a message stays in "
          "flight until every member has it.\n")
        w("| Target | group size | sends/s | deliveries/s | e2e latency ms "
          "p50 / p90 / p99 / p99.9 / max | server CPU | problems |")
        w("|---|---:|---:|---:|---|---|---|")
        fan_base = load(work, "fanout_parley-baseline")
        rows = [(NAMES[t], fan[t]) for t in TARGETS]
        rows.append(("Parley baseline binaries (`--baseline`)", fan_base))
        for label, r in rows:
            if not r:
                continue
            sends = int(r["sent"]) / r["duration_seconds"] \
                if r["duration_seconds"] else 0
            w(f"| {label} | {r['group_size']} | {fmt(sends)} | "
              f"{fmt(r['delivered_per_second'])} | {lat(r['end_to_end'])} | "
              f"{server_cpu(r)} | {problems(r)} |")
        w("")
        if fan["parley"] and fan_base and fan_base["delivered_per_second"]:
            w(f"- Fan-out, these binaries / the baseline binaries (same run): "
              f"{fan['parley']['delivered_per_second'] / fan_base['delivered_per_second']:.2f}x "
              f"deliveries/s; server CPU per delivery "
              f"{server_us(fan['parley']):.1f} against "
              f"{server_us(fan_base):.1f} us.\n")
        if fan["parley"]:
            d = fan["parley"]["delivered_per_second"]
            targets.append((f"fan-out deliveries/s "
                            f"({fan['parley']['group_size']}-member group)",
                            fmt(d), ">= 100,000", d >= 100000))
            targets.append((f"fan-out deliveries/s "
                            f"({fan['parley']['group_size']}-member group, "
                            "issue 19)", fmt(d), ">= 200,000", d >= 200000))

    # Scaled out.
    cl_pairs = load(work, "pairs_max_cluster")
    cl_fan = load(work, "fanout_cluster")
    if cl_pairs or cl_fan:
        scaled_out(w, targets, maxes["parley"], cl_pairs, fan["parley"],
                   cl_fan, machine, work)
        cl_profile = os.path.join(work, "profile_cluster.txt")
        if os.path.exists(cl_profile) and os.path.getsize(cl_profile):
            w("### Profile of the 1:1 cluster run (perf: gateways, replicas, "
              "nats-server, PostgreSQL)\n")
            w("```")
            w(open(cl_profile).read().rstrip())
            w("```\n")

    w("## Targets\n")
    w("| Target | measured | goal | |")
    w("|---|---|---|---|")
    for name, measured, goal, met in targets:
        w(f"| {name} | {measured} | {goal} | {'met' if met else '**MISSED**'} |")
    # The targets of sections this run did not rerun keep their row.
    produced = {name for name, _, _, _ in targets}
    for name, cells in previous_targets.items():
        if name in produced:
            continue
        measured = cells[1]
        if "(run of " not in measured:
            measured += f" (run of {previous_when})"
        w(f"| {name} | {measured} | {cells[2]} | {cells[3]} |")
    if machine.get("quick") == "1":
        w("\nA `--quick` run uses smaller counts than the targets name, so "
          "the connection targets cannot be met by it.")
    if failed:
        w("\nRuns that failed (no report): " + ", ".join(failed))
    w("")

    profile = os.path.join(work, "profile.txt")
    if os.path.exists(profile) and os.path.getsize(profile):
        w("## Profile of the 1:1 maximum run (perf, gateway + service)\n")
        w("```")
        w(open(profile).read().rstrip())
        w("```\n")

    if os.path.exists(analysis):
        w(open(analysis).read().rstrip() + "\n")

    w("## Exact commands\n")
    w("Each section starts fresh servers (`tests/bench/lib.sh`: "
      "`parley-service --link_address=127.0.0.1:0 --admin_address=127.0.0.1:0 "
      "--metrics_address=127.0.0.1:0 --data_dir=... --token_secret=... "
      "--admin_key=...`, `parley-gateway --listen_address=127.0.0.1:0 "
      "--service_address=... --max_connections=<nofile-200> "
      "--rate_limit_per_second=1e9 --rate_limit_burst=1e9 "
      "--rate_limit_bytes_per_second=1e15 --rate_limit_bytes_burst=1e15 "
      "--listen_backlog=4096`, `ws-relay --listen_address=127.0.0.1:0`, "
      "`nats-server -c` with `websocket { listen: \"127.0.0.1:<free>\", "
      "no_tls: true }`; for the cluster: PostgreSQL 15 `initdb -U parley "
      "--auth=trust` and `postgres -c listen_addresses=127.0.0.1 -c fsync=on "
      "-c synchronous_commit=on -c max_connections=200` as `nobody`, "
      "`nats-server -a 127.0.0.1 -p <free>`, replicas with the service flags "
      "above plus `--store=postgres://parley@127.0.0.1:<port>/parley "
      "--nats=nats://127.0.0.1:<port> --replica_id=replicaN`, gateways with "
      "`--service_address=<replica0 link>,<replica1 link>`), then:\n")
    w("```")
    for run_id, cmd in commands:
        w(f"# {run_id}\n{cmd}")
    w("```")
    if previous:
        out = merge_carried(out, previous, previous_when)
    print("\n".join(out))


if __name__ == "__main__":
    main()
