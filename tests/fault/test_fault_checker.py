"""The fault checker (fault_run.py): its client's rules on hand-made frames,
then a bounded run of a few seeds against the real binaries.

Run: /usr/bin/python3 -m pytest tests/fault (after `bazel build
//service:parley-service //gateway:parley-gateway`; PARLEY_BIN_DIR points at
other binaries). A soak: tests/fault/checker.py --seeds N --minutes M
[--topology scaled-out].
"""

import asyncio
import os
import random
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fault_client import (Changes, Connection, Device, Inbox,  # noqa: E402
                          Recorder, SendRecord, TaskSet)
from fault_run import SCALED_OUT, run_seed  # noqa: E402
from fault_schedule import CLUSTER_KINDS, make_schedule  # noqa: E402

# Seeds of the bounded run; each holds every fault kind at least once.
SEEDS = (1, 2, 3)
MINUTES = 0.25
# The scaled-out topology: its first round alone (each replica killed in
# turn, NATS killed, PostgreSQL restarted, then the other kinds) takes ~30 s.
SCALED_OUT_SEEDS = (1,)
SCALED_OUT_MINUTES = 0.5


def _device(max_replay=1000):
    return Device("d1", "alice", codec=None, auth="query", token="t",
                  rate=1.0, targets=[{"user": "bob"}], rng=random.Random(0),
                  gateways=list, recorder=Recorder(), changes=Changes(),
                  tasks=TaskSet(), max_replay=max_replay)


def _connect(device, hello_seq=None):
    conn = Connection(no=len(device.conns) + 1, gateway="gw",
                      hello_seq=hello_seq)
    device.conns.append(conn)
    device.conn = conn
    return conn


def _message(seq, sender="bob", cid="b-1"):
    return {"message": {"inboxSeq": str(seq), "messageId": f"m{seq}",
                        "from": sender, "clientMsgId": cid}}


def _feed(device, conn, *frames):
    async def feed():
        for frame in frames:
            await device.receive(conn, frame)
    asyncio.run(feed())


def _kinds(device):
    return [v.kind for v in device.rec.violations]


def test_inbox_applies_in_order_and_drains_what_it_held():
    inbox = Inbox()
    inbox.last = 0
    assert inbox.offer(2, "b") == "held"
    assert inbox.offer(1, "a") == "applied"
    assert inbox.last == 2 and not inbox.held
    assert inbox.offer(2, "b") == "duplicate"


def test_live_gap_is_a_violation_naming_the_missing_seqs():
    d = _device()
    conn = _connect(d)
    _feed(d, conn, {"welcome": {"inboxSeq": "0"}}, _message(1), _message(4))
    assert _kinds(d) == ["gap discovered by client"]
    assert "missing 2-3" in d.rec.violations[0].detail
    assert d.sync.reason == "gap"


def test_own_send_coming_back_as_a_message_is_an_echo():
    d = _device()
    conn = _connect(d)
    conn.sent.add("d1-1")
    _feed(d, conn, {"welcome": {"inboxSeq": "0"}},
          {"ack": {"clientMsgId": "d1-1", "messageId": "m1", "inboxSeq": "1"}},
          _message(1, sender="alice", cid="d1-1"))
    assert _kinds(d) == ["own send echoed"]


def test_replayed_own_message_settles_a_send_of_an_earlier_connection():
    d = _device()
    first = _connect(d)
    _feed(d, first, {"welcome": {"inboxSeq": "0"}})
    d.pending["d1-1"] = {"send": {"clientMsgId": "d1-1"}}
    d.sends["d1-1"] = SendRecord("alice", "d1-1", {"user": "bob"}, "hi")
    first.sent.add("d1-1")
    second = _connect(d, hello_seq=0)
    _feed(d, second, {"welcome": {"inboxSeq": "1"}},
          _message(1, sender="alice", cid="d1-1"),
          {"synced": {"messages": [_message(1, "alice", "d1-1")["message"]]}})
    assert _kinds(d) == []
    assert not d.pending and second.ready


def test_barrier_page_bringing_what_the_replay_skipped_is_a_violation():
    d = _device()
    _feed(d, _connect(d), {"welcome": {"inboxSeq": "0"}})
    conn = _connect(d, hello_seq=0)
    _feed(d, conn, {"welcome": {"inboxSeq": "2"}}, _message(1),
          {"synced": {"messages": [_message(1)["message"],
                                   _message(2)["message"]]}})
    assert _kinds(d) == ["replay incomplete"]
    assert d.inbox.last == 2 and conn.ready


def test_what_the_replay_cap_leaves_out_is_synced_without_a_violation():
    d = _device(max_replay=1)
    _feed(d, _connect(d), {"welcome": {"inboxSeq": "0"}})
    conn = _connect(d, hello_seq=0)
    _feed(d, conn, {"welcome": {"inboxSeq": "3"}}, _message(1), _message(4),
          {"synced": {"messages": [_message(s)["message"]
                                   for s in (1, 2, 3)]}})
    assert _kinds(d) == []
    assert d.inbox.last == 4


@pytest.mark.parametrize("seed", SEEDS)
def test_no_violation_under_a_seeded_fault_schedule(seed, tmp_path):
    result = run_seed(seed, MINUTES, str(tmp_path))
    assert result.ok, result.report()


@pytest.mark.parametrize("seed", SCALED_OUT_SEEDS)
def test_no_violation_scaled_out_under_a_seeded_fault_schedule(seed,
                                                               tmp_path):
    """2 gateways x 2 replicas on a real PostgreSQL and nats-server, 22
    devices: replicas killed and stopped, NATS killed, PostgreSQL restarted;
    no socket may close for a replica's death (1013 is a violation)."""
    result = run_seed(seed, SCALED_OUT_MINUTES, str(tmp_path), SCALED_OUT)
    assert result.ok, result.report()


def test_scaled_out_schedule_kills_each_replica_then_nats_then_postgres():
    schedule = make_schedule(1, 30, 2, 22, replicas=2)
    first = [(f.kind, f.target) for f in schedule[:4]]
    assert first == [("replica_kill", 0), ("replica_kill", 1),
                     ("nats_kill", 0), ("pg_restart", 0)]
    assert {f.kind for f in schedule} == set(CLUSTER_KINDS)


def test_scaled_out_topology_has_at_least_twenty_clients():
    assert len(SCALED_OUT.devices) >= 20
    assert len({name for name, _ in SCALED_OUT.devices}) == len(
        SCALED_OUT.devices)
