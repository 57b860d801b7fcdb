"""The store's disk fills up, or is read-only: the real parley-service binary
with its --data_dir on a small tmpfs.

While the disk is full every send fails with a retryable error that says so
(UNAVAILABLE on the link's Error frame and on the admin API), the service
logs the condition once and neither crashes nor retries checkpoints on every
refused write; once space returns (the tmpfs grows, or a filler file goes)
sends succeed again without a restart, every acknowledged message is there
with the seq and inbox_seq its Ack announced, and the database passes
PRAGMA integrity_check. A read-only data directory or database file stops
the service at start with a message naming the path and the reason.

Needs root (mount); skipped otherwise. Run: /usr/bin/python3 -m pytest
tests/service/test_disk_full.py (after `bazel build //service:parley-service`).
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import grpc
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402
from link_client import LinkClient, session_frames  # noqa: E402

USERS = ("alice", "bob", "carol")
TEXT = "x" * 2000
UNAVAILABLE = 7  # parley.v1.ErrorCode.ERROR_CODE_UNAVAILABLE


@pytest.fixture
def mount(tmp_path, procs):
    """mount(name, size_kib, readonly=False) mounts a tmpfs under tmp_path
    and returns its path; the processes are stopped and every mount undone
    at the end."""
    mounted = []

    def do_mount(name, size_kib, readonly=False):
        path = tmp_path / name
        path.mkdir()
        options = f"size={size_kib}k" + (",ro" if readonly else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs",
                            str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs as a small disk (needs root): "
                        f"{r.stderr.strip()}")
        mounted.append(path)
        return path

    yield do_mount
    procs.stop_all()
    for path in reversed(mounted):
        subprocess.run(["umount", str(path)], check=True)


def _remount(path, options):
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)],
                   check=True)


def _bind_readonly(path):
    """Bind-mounts `path` over itself read-only (a file or a directory)."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)


def _direct(a, b):
    return "d:" + ":".join(sorted((a, b)))


class Sender:
    """Sends from the three users' sessions on one link and keeps each
    send's latest answer (its Ack or Error frame), by client_msg_id."""

    def __init__(self, link):
        self.link = link
        self.sent = {}  # client_msg_id -> (session, conversation, recipient)
        self.answers = {}  # client_msg_id -> ("ack", Ack) | ("error", Error)
        self._n = 0

    def add(self, prefix):
        """Registers a new send (round robin over senders, every fourth to
        the group); returns its client_msg_id."""
        i = self._n
        self._n += 1
        sender = USERS[i % 3]
        cid = f"{prefix}{sender}-{i}"
        if i % 4 == 0:
            self.sent[cid] = (f"s-{sender}", "g:team", {"group": "team"})
        else:
            peer = USERS[(i + 1) % 3]
            self.sent[cid] = (f"s-{sender}", _direct(sender, peer),
                              {"user": peer})
        return cid

    def resend(self, cid):
        session, _, to = self.sent[cid]
        self.link.send(session, cid, TEXT, **to)

    def exchange(self, cids, timeout=30):
        """(Re)sends `cids` and waits until each has its new answer."""
        since = len(self.link.snapshot())
        for cid in cids:
            self.resend(cid)
        pending = set(cids)
        index = [0]

        def answered(event):
            index[0] += 1
            if index[0] <= since or not event.HasField("delivery"):
                return not pending
            for _, frame in session_frames(event.delivery):
                kind = frame.WhichOneof("frame")
                answer = frame.ack if kind == "ack" else frame.error
                if kind in ("ack", "error") and answer.client_msg_id in pending:
                    self.answers[answer.client_msg_id] = (kind, answer)
                    pending.discard(answer.client_msg_id)
            return not pending

        self.link.wait(answered, timeout=timeout)
        return [self.answers[c] for c in cids]

    def new(self, n, prefix=""):
        """n new sends, all in flight at once; returns their answers."""
        return self.exchange([self.add(prefix) for _ in range(n)])

    def acks(self):
        return {c: a for c, (kind, a) in self.answers.items() if kind == "ack"}

    def errors(self):
        return {c: e for c, (kind, e) in self.answers.items()
                if kind == "error"}


def _admin_send(admin, cid):
    request = admin.pb.admin.SendMessageRequest(
        client_msg_id=cid, to=admin.pb.client.Recipient(user="bob"),
        text=TEXT, **{"from": "alice"})
    return admin.stub.SendMessage(request, metadata=admin.metadata, timeout=10)


def _events(svc, event, start=0):
    return [fields for ev, fields in map(harness.parse_log_line,
                                         list(svc.lines)[start:])
            if ev == event]


def _history(admin, conversation):
    out = []
    before = 0
    while True:
        page = admin.call("GetHistory", conversation=conversation,
                          before_seq=before, limit=1000)
        out[:0] = list(page.messages)
        if not page.more:
            return out
        before = page.messages[0].seq


def _check_every_ack_is_stored(svc, pb, admin, sender):
    """Every acked message is in its conversation at its seq and in its
    sender's inbox at its inbox_seq; conversations and inboxes are gapless
    and hold each message once."""
    acks = sender.acks()
    for conv in {c for _, c, _ in sender.sent.values()}:
        history = _history(admin, conv)
        assert [m.seq for m in history] == list(range(1, len(history) + 1)), (
            f"{conv} has a gap")
        by_seq = {m.seq: m for m in history}
        for cid, ack in acks.items():
            if ack.conversation == conv:
                stored = by_seq.get(ack.seq)
                assert stored is not None, f"acked {cid} lost"
                assert (stored.message_id, stored.client_msg_id) == (
                    ack.message_id, cid)
    link = LinkClient(pb, svc.link_address, gateway_id="checker")
    for user in USERS:
        answer = link.open(f"c-{user}",
                           harness.mint_token(svc.token_secret, user))
        assert answer.HasField("accepted"), answer
        inbox = link.sync_all(f"c-{user}", page=500)
        assert [m.inbox_seq for m in inbox] == list(range(1, len(inbox) + 1))
        ids = [m.message_id for m in inbox]
        assert len(ids) == len(set(ids)), f"{user} has a message twice"
        by_seq = {m.inbox_seq: m for m in inbox}
        for cid, ack in acks.items():
            if sender.sent[cid][0] == f"s-{user}":
                assert by_seq[ack.inbox_seq].message_id == ack.message_id
    link.close()


def _integrity(db_path):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("free_space_by", ["growing_the_disk",
                                           "deleting_a_filler_file"])
def test_full_disk_refuses_sends_retryably_loses_no_ack_and_recovers(
        tmp_path, procs, pb, mount, free_space_by):
    # 2 MiB of disk for the store (and 8 MiB more for a filler file). With a
    # WAL interval of 2 pages the writer runs a checkpoint of its own before
    # most transactions, so the disk also fills during checkpoints (the
    # database file grows), not only in the WAL.
    filler = free_space_by == "deleting_a_filler_file"
    disk = mount("disk", 2048 + (8192 if filler else 0))
    if filler:
        with open(disk / "filler", "wb") as f:
            f.write(b"\0" * (8192 << 10))
    data_dir = disk / "data"
    svc = procs.add(harness.start_service(
        str(tmp_path), data_dir=str(data_dir),
        extra=["--sqlite_checkpoint_pages=2"]))
    admin = harness.AdminClient(svc)
    for user in USERS:
        admin.call("CreateUser", id=user)
    admin.call("CreateGroup", id="team", members=list(USERS))
    link = LinkClient(pb, svc.link_address)
    for user in USERS:
        answer = link.open(f"s-{user}",
                           harness.mint_token(svc.token_secret, user))
        assert answer.HasField("accepted"), answer
    sender = Sender(link)

    # Fill the disk: bursts of sends until a whole burst is refused.
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "the disk never filled up"
        if all(kind == "error" for kind, _ in sender.new(40)):
            break
    assert sender.acks(), "nothing was stored before the disk filled up"
    # What the refused burst left (less than its transactions needed) goes
    # too, so that no send of the same size fits while the disk is full.
    with open(disk / "top-off", "wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError:
            pass

    # While it is full, one send at a time (one transaction each) is refused
    # with a retryable error that names the condition, and checkpoints are not
    # retried for every refused write. (A WAL that started over may still
    # have room for a small transaction: those commit, and count below.)
    log_mark = len(svc.lines)
    refused = committed = 0
    while refused < 40:
        assert committed < 40, "sends keep succeeding on a full disk"
        (kind, _), = sender.new(1, prefix="full-")
        refused += kind == "error"
        committed += kind == "ack"
    for cid, error in sender.errors().items():
        assert error.code == UNAVAILABLE, (cid, error)
        assert "disk is full" in error.message, (cid, error.message)
    with pytest.raises(grpc.RpcError) as admin_refused:
        _admin_send(admin, "admin-on-full-disk")
    assert admin_refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "disk is full" in admin_refused.value.details()
    # At most one failed attempt each by the checkpointer and the writer,
    # again after a commit has grown the WAL.
    failed_checkpoints = _events(svc, "store.checkpoint_failed", log_mark)
    assert len(failed_checkpoints) <= 2 * (1 + committed), (
        f"{len(failed_checkpoints)} failed checkpoints for {refused} refused "
        f"and {committed} committed writes")
    full = _events(svc, "store.disk_full")
    assert len(full) == 1, svc.tail()
    assert full[0]["path"] == str(data_dir / "parley.db")
    assert svc.proc.poll() is None

    # Space returns: sends succeed at once, without a restart.
    if free_space_by == "growing_the_disk":
        _remount(disk, "size=65536k")
    else:
        os.remove(disk / "filler")
    answers = sender.new(15, prefix="after-")
    assert all(kind == "ack" for kind, _ in answers), answers
    assert _admin_send(admin, "admin-after").seq > 0
    # The condition is logged as over at the first commit after a second
    # without a refused write.
    deadline = time.monotonic() + 10
    while not _events(svc, "store.disk_full_cleared"):
        assert time.monotonic() < deadline, "store.disk_full_cleared missing"
        (kind, answer), = sender.new(1, prefix="after-")
        assert kind == "ack", answer
        time.sleep(0.05)  # Polls for a state, without filling the disk again.
    cleared, = _events(svc, "store.disk_full_cleared")
    assert cleared["path"] == str(data_dir / "parley.db")

    # Nothing acknowledged is lost and no refused send was stored (the two
    # more are the group's creation event and the admin send after the
    # recovery); sent again with its client_msg_id, each refused one is
    # stored now, once.
    _check_every_ack_is_stored(svc, pb, admin, sender)
    assert admin.call("GetStats").stored_messages == len(sender.acks()) + 2
    answers = sender.exchange(list(sender.errors()))
    assert all(kind == "ack" for kind, _ in answers), answers
    assert admin.call("GetStats").stored_messages == len(sender.sent) + 2
    _check_every_ack_is_stored(svc, pb, admin, sender)

    link.close()
    admin.close()
    assert svc.stop(signal.SIGTERM) == 0
    assert _integrity(str(data_dir / "parley.db")) == [("ok",)]


def _run_service(data_dir, timeout=20):
    """Runs parley-service until it exits (it must, within `timeout`)."""
    argv = [harness.bin_path("service/parley-service"),
            f"--data_dir={data_dir}", "--link_address=127.0.0.1:0",
            "--admin_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
            "--token_secret=s", "--admin_key=k"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    start = time.monotonic()
    try:
        result = subprocess.run(argv, capture_output=True, text=True,
                                timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"parley-service kept running on an unwritable data "
                    f"directory: {e.stderr}")
    return result, time.monotonic() - start


def _make_database(tmp_path, procs, data_dir):
    svc = procs.add(harness.start_service(str(tmp_path), data_dir=str(data_dir),
                                          name="service-first"))
    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    admin.close()
    assert svc.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("case", ["empty_read_only_directory",
                                  "database_in_a_read_only_directory",
                                  "read_only_database_file",
                                  "missing_directory_on_a_read_only_disk"])
def test_unwritable_data_dir_fails_at_start_naming_path_and_reason(
        tmp_path, procs, mount, case):
    disk = mount("disk", 1024)
    data_dir = disk / "data"
    data_dir.mkdir()
    named = data_dir / "parley.db"
    if case == "empty_read_only_directory":
        _remount(disk, "ro")
    elif case == "database_in_a_read_only_directory":
        _make_database(tmp_path, procs, data_dir)
        _remount(disk, "ro")
    elif case == "read_only_database_file":
        _make_database(tmp_path, procs, data_dir)
        _bind_readonly(named)
    else:
        _remount(disk, "ro")
        data_dir = data_dir / "missing"
        named = data_dir
    try:
        result, seconds = _run_service(data_dir)
    finally:
        if case == "read_only_database_file":
            subprocess.run(["umount", str(named)], check=True)
    print(result.stderr)
    assert result.returncode != 0
    assert seconds < 10
    assert "service.start_failed" in result.stderr
    assert str(named) in result.stderr
    assert "Read-only file system" in result.stderr
    assert "service.ready" not in result.stderr
