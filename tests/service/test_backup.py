"""Backup and restore with the real binaries: `parleyctl backup` against a
parley-service under traffic writes a checked copy whose summary is the
truth about the file; `parley-service restore` refuses while a service runs
on the data directory, and once it is stopped puts back exactly the backup's
messages under a new store generation. A second service on a data directory
in use fails at start; a backup of an empty store fails loudly.

Run: /usr/bin/python3 -m pytest tests/service/test_backup.py (after `bazel
build //service:parley-service //tools:parleyctl`).
"""

import json
import os
import sqlite3
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402


def _run(argv, timeout=120):
    # Without the caller's PARLEY_* variables, which both binaries read.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return subprocess.run(argv, capture_output=True, text=True,
                          timeout=timeout, env=env)


def _parleyctl(svc, *args):
    return _run([harness.bin_path("tools/parleyctl"),
                 f"--admin_addr={svc.admin_address}",
                 f"--admin_key={svc.admin_key}", *args])


def _service_argv(data_dir, *args):
    return [harness.bin_path("service/parley-service"), *args,
            f"--data_dir={data_dir}"]


def _restore(data_dir, backup):
    return _run(_service_argv(data_dir, "restore", f"--from={backup}"))


def _summary(stdout):
    """The `name   value` lines of a restore's output, as a dict."""
    rows = {}
    for line in stdout.splitlines()[1:]:
        name, _, value = line.rpartition("  ")
        rows[name.strip()] = value.strip()
    return rows


def _stored(db_path):
    """(conversation, seq, client_msg_id) of every message, by id."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return db.execute("SELECT conversation, seq, client_msg_id "
                          "FROM messages ORDER BY id").fetchall()
    finally:
        db.close()


def _history(admin, conversation):
    """Every stored message of a conversation through the admin API."""
    out, before = [], 0
    while True:
        page = admin.call("GetHistory", conversation=conversation,
                          before_seq=before, limit=1000)
        out[:0] = [(conversation, m.seq, m.client_msg_id)
                   for m in page.messages]
        if not page.more:
            return out
        before = page.messages[0].seq


def _send(admin, pb, i, tag):
    if i % 3 == 0:
        return admin.call("SendMessage", **{"from": "bob"},
                          to=pb.client.Recipient(group="team"),
                          text=f"{tag} {i}", client_msg_id=f"{tag}-{i}")
    return admin.call("SendMessage", **{"from": "alice"},
                      to=pb.client.Recipient(user="bob"),
                      text=f"{tag} {i}", client_msg_id=f"{tag}-{i}")


def test_restore_brings_back_exactly_the_backup_under_a_new_generation(
        tmp_path, procs, pb):
    data_dir = tmp_path / "data"
    backup = tmp_path / "backups" / "parley.db"
    backup.parent.mkdir()
    svc = procs.add(harness.start_service(str(tmp_path), data_dir=str(data_dir),
                                          name="service-1"))
    admin = harness.AdminClient(svc)
    for user in ("alice", "bob"):
        admin.call("CreateUser", id=user)
    admin.call("CreateGroup", id="team", members=["alice", "bob"])

    # Sends go on throughout the backup.
    acked, warm, stop = [], threading.Event(), threading.Event()

    def traffic():
        sender = harness.AdminClient(svc)
        i = 0
        while not stop.is_set():
            _send(sender, pb, i, "before")
            acked.append(i)
            i += 1
            if i >= 100:
                warm.set()
        sender.close()

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        assert warm.wait(60)
        acked_before = len(acked)
        out = _parleyctl(svc, "--json", "backup", str(backup))
        acked_after = len(acked)
    finally:
        stop.set()
        thread.join()
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    generation = admin.call("GetStats").store_generation
    assert len(generation) == 16

    # The summary is the truth about the file.
    in_backup = _stored(str(backup))
    assert summary["path"] == str(backup)
    assert int(summary["sizeBytes"]) == os.path.getsize(backup)
    assert int(summary["users"]) == 2 and int(summary["groups"]) == 1
    assert int(summary["messages"]) == len(in_backup)
    assert int(summary["lastMessageId"]) == len(in_backup)
    assert summary["generation"] == generation
    # Everything acknowledged before the backup began, nothing never sent.
    assert acked_before <= len(in_backup) <= acked_after + 1

    # More traffic after the backup: none of it comes back.
    for i in range(20):
        _send(admin, pb, i, "after")
    admin.close()

    # Refused while the service runs on the data directory.
    refused = _restore(data_dir, backup)
    assert refused.returncode == 1, refused
    assert "in use by another parley-service" in refused.stderr
    assert "nothing changed" in refused.stderr

    # A second service on the same data directory fails at start.
    second = _run(_service_argv(
        data_dir, "--link_address=127.0.0.1:0", "--admin_address=127.0.0.1:0",
        "--metrics_address=127.0.0.1:0", "--token_secret=s", "--admin_key=k"),
        timeout=30)
    assert second.returncode != 0
    assert "service.start_failed" in second.stderr
    assert f'the data directory \\"{data_dir}\\" is in use' in second.stderr
    assert "service.ready" not in second.stderr

    assert svc.stop() == 0
    restored = _restore(data_dir, backup)
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(
        f"restored {backup} into {data_dir}/parley.db: integrity ok\n")
    rows = _summary(restored.stdout)
    assert int(rows["messages"]) == len(in_backup)
    assert int(rows["last message id"]) == len(in_backup)
    assert rows["backup generation"] == generation
    assert rows["old generation"] == generation
    new_generation = rows["new generation"]
    assert len(new_generation) == 16 and new_generation != generation

    svc = procs.add(harness.start_service(str(tmp_path), data_dir=str(data_dir),
                                          name="service-2"))
    admin = harness.AdminClient(svc)
    stats = admin.call("GetStats")
    assert stats.store_generation == new_generation
    assert stats.stored_messages == len(in_backup)
    served = sorted(_history(admin, "d:alice:bob") + _history(admin, "g:team"))
    assert served == sorted(in_backup)
    # A send acknowledged after the backup is new to the restored store.
    ack = _send(admin, pb, 1, "after")
    assert ack.message_id == str(len(in_backup) + 1)
    admin.close()


def test_backup_of_an_empty_store_fails_loudly_and_writes_nothing(
        tmp_path, procs):
    svc = procs.add(harness.start_service(str(tmp_path)))
    backup = tmp_path / "empty.db"
    out = _parleyctl(svc, "backup", str(backup))
    assert out.returncode != 0
    assert "nothing to back up" in out.stderr
    assert "is the service on the right data volume?" in out.stderr
    assert not backup.exists()

    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    admin.close()
    taken = tmp_path / "taken.db"
    taken.write_text("not a backup")
    out = _parleyctl(svc, "backup", str(taken))
    assert out.returncode == 6, out.stderr  # ALREADY_EXISTS
    assert taken.read_text() == "not a backup"
    out = _parleyctl(svc, "backup", str(tmp_path / "missing" / "a.db"))
    assert out.returncode != 0
    assert "does not exist on the service's filesystem" in out.stderr
