"""parley-service on PostgreSQL, the real binaries: a real PostgreSQL 15 is
started for each test (initdb in a fresh directory under /tmp, a free port,
as `nobody` when the tests run as root: the server refuses root), stopped by
PID. While it is down, sends are answered UNAVAILABLE (what the gateway
retries); once it is back the service reconnects by itself, and nothing
acknowledged is lost. A service SIGKILLed while sends are in flight leaves
every acknowledged message in place and every inbox gapless.

Run: /usr/bin/python3 -m pytest tests/service (after `bazel build //...`).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402
from link_client import LinkClient, session_frames  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
NOBODY = 65534


def _as_nobody():
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)


class Postgres:
    """A PostgreSQL server in a temporary directory, stopped by PID."""

    def __init__(self):
        if not os.access(os.path.join(PG_BIN, "postgres"), os.X_OK):
            pytest.fail("PostgreSQL 15 is not installed; run "
                        "`tools/deps.sh test` (apt-get install postgresql-15)")
        self.dir = tempfile.mkdtemp(prefix="parley_pg_py.", dir="/tmp")
        if os.geteuid() == 0:
            os.chown(self.dir, NOBODY, NOBODY)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = os.path.join(self.dir, "postgres.log")
        subprocess.run(
            [os.path.join(PG_BIN, "initdb"), "-D", self.dir + "/data", "-A",
             "trust", "-U", "parley", "-E", "UTF8", "--locale=C",
             "--no-sync"],
            check=True, preexec_fn=_as_nobody, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, timeout=120)
        self.proc = None
        self.start()

    def start(self):
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [os.path.join(PG_BIN, "postgres"), "-D", self.dir + "/data",
                 "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
                 "-c", "unix_socket_directories=", "-c", "fsync=on"],
                preexec_fn=_as_nobody, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        while subprocess.run(
                [os.path.join(PG_BIN, "pg_isready"), "-q", "-h", "127.0.0.1",
                 "-p", str(self.port)]).returncode != 0:
            assert self.proc.poll() is None, open(self.log).read()[-2000:]
            assert time.monotonic() < deadline, "postgres not ready"
            time.sleep(0.05)  # pg_isready answers at once; nothing to await.

    def stop(self):
        """Fast shutdown (SIGINT) by PID, and waits for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(60)

    def create_database(self, name):
        subprocess.run(
            [os.path.join(PG_BIN, "psql"), "-q", "-h", "127.0.0.1", "-p",
             str(self.port), "-U", "parley", "-d", "postgres", "-c",
             f'CREATE DATABASE "{name}"'], check=True, timeout=60)
        return f"postgres://parley@127.0.0.1:{self.port}/{name}"

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def postgres():
    pg = Postgres()
    yield pg
    pg.cleanup()


USERS = ("alice", "bob", "carol")


def _open_all(link, svc):
    for user in USERS:
        answer = link.open(f"s-{user}",
                           harness.mint_token(svc.token_secret, user))
        assert answer.HasField("accepted"), answer


def _error_for(link, session, cid):
    for frame in link.frames_for(session, "error"):
        if frame.error.client_msg_id == cid:
            return frame.error
    return None


def test_sends_fail_unavailable_while_postgres_is_down_then_recover(
        tmp_path, procs, pb, postgres):
    url = postgres.create_database("parley")
    svc = procs.add(harness.start_service(str(tmp_path),
                                          extra=[f"--store={url}"]))
    admin = harness.AdminClient(svc)
    for user in USERS:
        admin.call("CreateUser", id=user)
    link = LinkClient(pb, svc.link_address)
    _open_all(link, svc)
    acks = {}
    for i in range(20):
        link.send("s-alice", f"a{i}", f"before {i}", user="bob")
    for i in range(20):
        acks[f"a{i}"] = link.wait_ack("s-alice", f"a{i}")

    postgres.stop()
    link.send("s-alice", "during", "while postgres is down", user="bob")
    link.wait(lambda e: _error_for(link, "s-alice", "during") is not None)
    error = _error_for(link, "s-alice", "during")
    assert error.code == pb.client.ERROR_CODE_UNAVAILABLE, error
    svc.wait_for_event("store.pg_connection_lost")

    postgres.start()
    # What the gateway does with UNAVAILABLE: send again until acked.
    deadline = time.monotonic() + 30
    attempt = 0
    while True:
        attempt += 1
        cid = "during"
        before = len(link.frames_for("s-alice", "error"))
        link.send("s-alice", cid, "while postgres is down", user="bob")
        link.wait(lambda e: ("s-alice", cid) in link.acks or
                  len(link.frames_for("s-alice", "error")) > before)
        if ("s-alice", cid) in link.acks:
            break
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.1)  # The gateway's retry backoff.
    ack = link.wait_ack("s-alice", "during")
    assert ack.seq == 21
    svc.wait_for_event("store.pg_reconnected")

    # Nothing acknowledged is lost; bob's inbox is gapless.
    inbox = link.sync_all("s-bob")
    assert [m.inbox_seq for m in inbox] == list(range(1, 22))
    for cid, a in acks.items():
        assert inbox[a.inbox_seq - 1].message_id == a.message_id
    link.close()
    admin.close()


def test_every_acked_message_survives_a_sigkilled_service(
        tmp_path, procs, pb, postgres):
    url = postgres.create_database("parley")
    svc = procs.add(harness.start_service(str(tmp_path), name="service-1",
                                          extra=[f"--store={url}"]))
    admin = harness.AdminClient(svc)
    for user in USERS:
        admin.call("CreateUser", id=user)
    admin.call("CreateGroup", id="team", members=list(USERS))
    link = LinkClient(pb, svc.link_address)
    _open_all(link, svc)

    sent = {}
    stop = threading.Event()

    def send_forever():
        i = 0
        while not stop.is_set() and i < 5000:
            sender = USERS[i % 3]
            cid = f"{sender}-{i}"
            if i % 4 == 0:
                sent[cid] = "g:team"
                link.send(f"s-{sender}", cid, f"group {i}", group="team")
            else:
                peer = USERS[(i + 1) % 3]
                sent[cid] = "d:" + ":".join(sorted((sender, peer)))
                link.send(f"s-{sender}", cid, f"direct {i}", user=peer)
            i += 1
            if i % 50 == 0:
                time.sleep(0.005)  # Keep the backlog modest.

    sender = threading.Thread(target=send_forever)
    sender.start()
    try:
        link.wait(lambda _: link.ack_count() >= 300, timeout=60)
    finally:
        svc.kill()
        stop.set()
        sender.join()
    acks = {}
    for e in link.snapshot():
        if e.HasField("delivery"):
            for _, frame in session_frames(e.delivery):
                if frame.HasField("ack"):
                    acks[frame.ack.client_msg_id] = frame.ack
    link.close()
    assert len(acks) < len(sent), "the kill came too late to test anything"

    svc2 = procs.add(harness.start_service(str(tmp_path), name="service-2",
                                           extra=[f"--store={url}"]))
    link2 = LinkClient(pb, svc2.link_address)
    _open_all(link2, svc2)
    for user in USERS:
        inbox = link2.sync_all(f"s-{user}")
        assert [m.inbox_seq for m in inbox] == list(range(1, len(inbox) + 1))
        by_seq = {m.inbox_seq: m for m in inbox}
        for cid, ack in acks.items():
            if cid.startswith(user + "-"):
                assert by_seq[ack.inbox_seq].message_id == ack.message_id
                assert by_seq[ack.inbox_seq].client_msg_id == cid
    link2.close()
    admin.close()
