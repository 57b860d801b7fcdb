"""A randomized fault checker for Parley's delivery guarantees (issue 15).

In the spirit of Jepsen: real parley-service and two parley-gateways on
loopback, eight client devices of six users (two users with two devices)
plus an admin "bot", sending 1:1 and group messages at random over WebSocket
(JSON and protobuf subprotocols, ?token= and hello), while a seeded schedule
(fault_schedule.py) SIGKILLs and restarts the service, SIGKILLs gateways,
SIGSTOPs the service, drops client sockets, and cuts or stalls each gateway's
link through a TCP proxy. The client (fault_client.py) is written from
client.proto and docs/protocol.md only. Every frame, fault and close is
logged with the client clock (events.jsonl in the run's directory).

After the faults a quiet period follows: sending stops, every fault is
healed, every send must be acked, every device must have applied its user's
whole inbox, and a last sync{limit: 1} per device flushes what the service
still had queued. Then the store's truth is read (Admin.GetHistory per
conversation, each inbox over a GatewayLink stream of our own: see
fault_audit.py) and checked.

The rules. A "session" is one WebSocket connection; a "device" is one client
that reconnects (hello inboxSeq = the highest inbox_seq it applied, omitted
on its first connect, which then starts at the welcome head).

Seen on the wire, per session:
  gap discovered by client   a live message or Ack has inbox_seq > last + 1
        and some missing inbox_seq is not explained: the service owes every
        session, unasked, everything after its resume point and every message
        stored after it went live, in order, so any sync a client must start
        because a frame skipped ahead is a lost delivery. Explained (not a
        violation): seqs at or below the welcome head while that session's
        barrier sync is in flight (reported as "replay incomplete" if the
        barrier brings them), and seqs the replay cap left out
        (hello + --max_replay < seq <= welcome head).
  replay incomplete          after a resume whose welcome head is above
        last, the barrier sync {afterSeq: last, limit: head - last} (answered
        after the replay) returned a message the replay had not delivered,
        other than one the replay cap left out.
  own send echoed            a session that sent clientMsgId c gets a
        message from its own user with clientMsgId c (it must get the Ack);
  ack repeated / ack without send    a second Ack for c on one session, or
        an Ack for a c the session never sent;
  duplicate delivery         a live message at or below last whose inbox_seq
        was applied from a live message or an Ack (overlap with a synced
        page is expected and allowed);
  out of order               a live message below an earlier live message of
        the same session (and above last);
  store generation changed   a welcome names another store generation than
        the device's first one (no run restores the store);
  welcome head below resume point, frame before welcome, unsolicited synced,
  synced page has a gap, unexpected error (not RATE_LIMITED, UNAVAILABLE or
  BACKPRESSURE), unexpected close (a code other than 1001, 1006, 1013, 4008
  while the client was not closing).
At the end, per device, per user and in the store:
  did not settle             a device not live, with sends pending or behind
        its user's inbox head, SETTLE_TIMEOUT s after the faults stopped;
  never delivered            an inbox_seq of the user's inbox after the
        device's first welcome head that it never applied (live, Ack, sync):
        every device of every recipient gets every message exactly once;
  message disagrees with store   a received message (live or synced,
        duplicates included) that is not the one stored at that inbox_seq of
        the user's inbox: no message that was not stored shows up, and the
        inbox_seqs of messages agree with the store;
  send never acked, ack disagrees with store (message id, conversation, seq
        vs history; inbox_seq vs the sender's inbox), failed send stored,
        stored message nobody sent, stored twice (idempotency);
  conversation seq gap, inbox seq gap, inbox audience (a message in other
        inboxes than its conversation's members'), inbox entry not in
        history / differs from it.

checker.py is the command line; test_fault_checker.py runs a few seeds.
"""

import asyncio
import dataclasses
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402
import fault_audit  # noqa: E402
from fault_client import (EXPECTED_CLOSES, REPLICATED_CLOSES,  # noqa: E402
                          Changes, Codec, Device, Recorder, TaskSet)
from fault_cluster import (GATEWAYS, AdminBot, Cluster,  # noqa: E402
                           ReplicatedCluster)
from fault_schedule import format_schedule, make_schedule  # noqa: E402

USERS = ("u1", "u2", "u3", "u4", "u5", "u6")
# (device, user). u6 is in no group and only the bot's bursts after a
# service restart write to it: its sessions send and are otherwise told only
# about their Acks (what issue 15's first bug needed to show).
DEVICES = (("u1a", "u1"), ("u1b", "u1"), ("u2a", "u2"), ("u2b", "u2"),
           ("u3", "u3"), ("u4", "u4"), ("u5", "u5"), ("u6", "u6"))
GROUPS = {"all": ("u1", "u2", "u3", "u4", "u5", AdminBot.USER),
          "trio": ("u1", "u3", "u5")}


@dataclasses.dataclass(frozen=True)
class Topology:
    """Who takes part and what runs: `cluster` is fault_cluster.Cluster (one
    service) or ReplicatedCluster (replicas on PostgreSQL and NATS)."""
    name: str
    users: tuple
    devices: tuple
    groups: dict
    cluster: type
    replicas: int = 0
    expected_closes: frozenset = EXPECTED_CLOSES


ONE_BOX = Topology("one-box", USERS, DEVICES, GROUPS, Cluster)
_MORE_USERS = tuple(f"u{i}" for i in range(7, 13))
# 22 devices of 12 users: 2 gateways x 2 replicas under >= 20 clients.
SCALED_OUT = Topology(
    "scaled-out", USERS + _MORE_USERS,
    DEVICES + (("u3b", "u3"), ("u4b", "u4")) + tuple(
        (f"{u}{d}", u) for u in _MORE_USERS for d in "ab"),
    {**GROUPS, "dozen": ("u1",) + _MORE_USERS},
    ReplicatedCluster, ReplicatedCluster.REPLICAS, REPLICATED_CLOSES)
TOPOLOGIES = {t.name: t for t in (ONE_BOX, SCALED_OUT)}
SUBPROTOCOLS = ("parley.v1.json", "parley.v1.proto")
AUTHS = ("query", "hello")
MAX_REPLAY = 1000
BOT_RATE = 0.5
SEND_RATE = (0.5, 2.0)  # per device, sends per second
START_TIMEOUT = 20.0
SETTLE_TIMEOUT = 30.0
FINAL_SYNC_TIMEOUT = 10.0
EXAMPLES_PER_KIND = 3


def _targets(topology, user):
    """Recipients a device of `user` picks from (duplicates weigh more)."""
    targets = [{"user": u} for u in topology.users if u not in (user, "u6")]
    for group, members in topology.groups.items():
        if user in members:
            targets += [{"group": group}] * (2 if group == "trio" else 1)
    return targets


def _bot_targets(topology, burst):
    """The bot writes to every user and group "all"; to u6 only in bursts."""
    users = (topology.users if burst else
             [u for u in topology.users if u != "u6"])
    return [{"user": u} for u in users] + [{"group": "all"}]


@dataclasses.dataclass
class RunResult:
    """One seed's outcome."""
    seed: int
    minutes: float
    topology: Topology
    schedule: list
    violations: list
    recorder: Recorder
    workdir: str
    elapsed: float
    stats: dict

    @property
    def ok(self):
        return not self.violations

    def summary(self):
        counts = ", ".join(f"{k} {v}" for k, v in self.stats.items())
        state = ("PASS" if self.ok else
                 f"FAIL ({len(self.violations)} violations)")
        return f"seed {self.seed}: {state} in {self.elapsed:.1f}s; {counts}"

    def report(self):
        """Everything needed to understand and replay a failure."""
        names = [name for name, _ in self.topology.devices]
        lines = [self.summary(),
                 f"replay: /usr/bin/python3 tests/fault/checker.py "
                 f"--seed {self.seed} --minutes {self.minutes} "
                 f"--topology {self.topology.name}",
                 f"run directory (logs, events.jsonl): {self.workdir}",
                 "schedule:", format_schedule(self.schedule, names),
                 "faults applied (client clock):"]
        lines += [f"  {t:8.3f} {what} {frame}" for t, _, _, what, frame
                  in self.recorder.events if what in ("fault", "healed")]
        lines += self._violation_lines()
        return "\n".join(lines)

    def _violation_lines(self):
        by_kind = {}
        for v in self.violations:
            by_kind.setdefault(v.kind, []).append(v)
        lines = ["violations:"]
        for kind, vs in sorted(by_kind.items()):
            lines.append(f"  {kind}: {len(vs)}")
            for v in vs[:EXAMPLES_PER_KIND]:
                lines.append(f"    at {v.t:.3f} {v.device} conn {v.conn}: "
                             f"{v.detail}")
                if v.frame is not None:
                    lines.append(f"      frame: {v.frame}")
                lines += [f"      | {t:8.3f} {what} {frame}"
                          for t, what, frame in self._context(v)]
        return lines

    def _context(self, violation, n=6):
        """The last frames of the violation's session before it."""
        events = [(t, what, frame) for t, device, conn, what, frame
                  in self.recorder.events
                  if device == violation.device and conn == violation.conn
                  and t <= violation.t and violation.conn]
        return events[-n:]


class Run:
    """One seed: set up, run the schedule, quiet down, audit, tear down."""

    def __init__(self, seed, minutes, workdir, topology):
        self.seed = seed
        self.minutes = minutes
        self.workdir = workdir
        self.topology = topology
        self.rec = Recorder()
        self.changes = Changes()
        self.cluster = topology.cluster(workdir, harness.ProcGroup(),
                                        self.rec, MAX_REPLAY)
        self.schedule = []
        self.devices = []
        self.bot = None
        self.stats = {}
        self.tasks = TaskSet()

    async def execute(self):
        try:
            await self._set_up()
            for fault in self.schedule:
                await asyncio.sleep(fault.after)
                await self.cluster.apply(fault)
            self.stats["faults"] = len(self.schedule)
            await self._quiet()
            for d in self.devices:
                await d.close()
            service, admin = self.cluster.audit_target()
            truth = await asyncio.to_thread(
                fault_audit.read_truth, service, admin,
                self.topology.users + (AdminBot.USER,), self.topology.groups)
            self._audit(truth)
        finally:
            await self._tear_down()

    async def _set_up(self):
        await self.cluster.start()
        for user in self.topology.users + (AdminBot.USER,):
            await self.cluster.admin_call("CreateUser", id=user)
        for group, members in self.topology.groups.items():
            await self.cluster.admin_call("CreateGroup", id=group,
                                          members=members)
        self.devices = self._make_devices()
        self.bot = AdminBot(self.cluster, _bot_targets(self.topology, False),
                            _bot_targets(self.topology, True),
                            random.Random(f"bot:{self.seed}"), self.rec,
                            self.changes, self.tasks, BOT_RATE)
        self.cluster.devices, self.cluster.bot = self.devices, self.bot
        self.schedule = make_schedule(self.seed, self.minutes * 60, GATEWAYS,
                                      len(self.devices),
                                      self.topology.replicas)
        for d in self.devices:
            self.tasks.spawn(d.run())
        if not await self.changes.until(
                lambda: all(d.start_seq is not None for d in self.devices),
                START_TIMEOUT):
            raise RuntimeError(f"seed {self.seed}: the devices did not all "
                               f"get a welcome")
        for d in self.devices:
            self.tasks.spawn(d.produce())
        self.tasks.spawn(self.bot.run())

    def _make_devices(self):
        pb = harness.protos()
        devices = []
        for i, (name, user) in enumerate(self.topology.devices):
            rng = random.Random(f"device:{self.seed}:{name}")
            devices.append(Device(
                name, user, codec=Codec(SUBPROTOCOLS[i % 2], pb.client),
                auth=AUTHS[(i // 2) % 2],
                token=harness.mint_token(self.cluster.service.token_secret,
                                         user, device=name),
                rate=rng.uniform(*SEND_RATE),
                targets=_targets(self.topology, user),
                rng=rng, gateways=self.cluster.gateway_addresses,
                recorder=self.rec, changes=self.changes, tasks=self.tasks,
                max_replay=MAX_REPLAY,
                expected_closes=self.topology.expected_closes))
        return devices

    async def _quiet(self):
        """Stops sending, heals, waits for every Ack and for every device to
        catch up with the store, then flushes each session with a last
        sync."""
        for d in self.devices:
            d.stop_sending()
        self.bot.stop_sending()
        await self.cluster.heal()
        await self.changes.until(
            lambda: not self.bot.pending and
            not any(d.pending for d in self.devices), SETTLE_TIMEOUT)
        service, _ = self.cluster.audit_target()
        inboxes = await asyncio.to_thread(
            fault_audit.read_inboxes, service, self.topology.users, "heads")
        heads = {u: max(inbox, default=0) for u, inbox in inboxes.items()}
        await self.changes.until(
            lambda: all(d.settled(heads[d.user]) for d in self.devices),
            SETTLE_TIMEOUT)
        for d in self.devices:
            await self._flush(d, heads[d.user])

    async def _flush(self, device, head):
        conn = device.conn.no if device.conn else 0
        if not device.settled(head):
            self.rec.violate(
                "did not settle", device.name, conn,
                f"last {device.inbox.last}, head {head}, pending "
                f"{sorted(device.pending)}, held {sorted(device.inbox.held)}, "
                f"sync {device.sync.reason if device.sync else None}")
            return
        try:
            await device.final_sync(FINAL_SYNC_TIMEOUT)
        except asyncio.TimeoutError:
            self.rec.violate("did not settle", device.name, conn,
                             "no answer to the final sync")

    def _audit(self, truth):
        sends = [s for d in self.devices for s in d.sends.values()]
        sends += list(self.bot.sends.values())
        fault_audit.check_store(truth, self.rec)
        fault_audit.check_sends(truth, sends, self.rec)
        fault_audit.check_deliveries(truth, self.devices,
                                     self._received_messages(), self.rec)
        closes = {}
        for d in self.devices:
            for c in d.conns:
                if c.close is not None:
                    closes[c.close[0]] = closes.get(c.close[0], 0) + 1
        self.stats.update(
            sends=len(sends),
            stored=sum(len(h) for h in truth.history.values()),
            delivered=sum(len(d.inbox.applied) for d in self.devices),
            sessions=sum(len(d.conns) for d in self.devices),
            closes=" ".join(f"{code}x{n}" for code, n in sorted(
                closes.items(), key=lambda kv: str(kv[0]))) or "none")

    def _received_messages(self):
        """(device, user, conn, message) for every message a device got."""
        users = {d.name: d.user for d in self.devices}
        out = []
        for _, device, conn, what, frame in self.rec.events:
            if what != "<" or device not in users:
                continue
            if "message" in frame:
                out.append((device, users[device], conn, frame["message"]))
            for m in frame.get("synced", {}).get("messages", []):
                out.append((device, users[device], conn, m))
        return out

    async def _tear_down(self):
        for d in self.devices:
            await d.close()
        await self.tasks.cancel_all()
        await self.cluster.stop()
        self.rec.dump(os.path.join(self.workdir, "events.jsonl"))
        if self.tasks.crashes:
            raise RuntimeError(f"seed {self.seed}: a checker task died "
                               f"(events: {self.workdir})"
                               ) from self.tasks.crashes[0]


def run_seed(seed, minutes, workdir, topology=ONE_BOX):
    """Runs one seed in `workdir` (an existing directory); returns its
    RunResult."""
    start = time.monotonic()
    run = Run(seed, minutes, workdir, topology)
    asyncio.run(run.execute())
    return RunResult(seed, minutes, topology, run.schedule,
                     run.rec.violations,
                     run.rec, workdir, time.monotonic() - start, run.stats)
