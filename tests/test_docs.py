"""The guides stay true: the configuration reference matches the binaries,
the token recipes in docs/operators.md mint tokens the real service accepts,
and its backup recipe copies a live database that its restore recipe puts
back."""

import asyncio
import glob
import json
import os
import re
import sqlite3
import subprocess
import threading

import harness

DOCS = os.path.join(harness.REPO, "docs")


def _bin_dir():
    return os.path.dirname(os.path.dirname(harness.bin_path("tools/parleyctl")))


def test_configuration_reference_is_current():
    out = subprocess.run(
        ["/usr/bin/python3", os.path.join(harness.REPO, "tools",
                                          "gen_config_doc.py"), _bin_dir()],
        check=True, text=True, stdout=subprocess.PIPE).stdout
    with open(os.path.join(DOCS, "configuration.md"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == out, (
        "docs/configuration.md is stale; run "
        "tools/gen_config_doc.py $(bazel info bazel-bin) docs/configuration.md")


def _code_block_after(text, marker, lang):
    start = text.index(marker)
    m = re.compile(r"```" + lang + r"\n(.*?)```", re.S).search(text, start)
    return m.group(1)


async def _welcome(address, token):
    import websockets  # Debian's python3-websockets.
    async with websockets.connect(f"ws://{address}/?token={token}") as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_token_recipes_in_the_operators_guide_are_accepted(tmp_path, procs):
    with open(os.path.join(DOCS, "operators.md"), encoding="utf-8") as f:
        guide = f.read()
    secret = "recipe-secret"
    svc = procs.add(harness.start_service(str(tmp_path), token_secret=secret))
    gw = procs.add(harness.start_gateway(str(tmp_path), svc.link_address))
    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    admin.close()

    shell = _code_block_after(guide, "With nothing but a shell", "sh")
    token = subprocess.run(["bash", "-c", shell], check=True, text=True,
                           stdout=subprocess.PIPE,
                           env=dict(os.environ, PARLEY_TOKEN_SECRET=secret)
                           ).stdout.strip()
    frame = asyncio.run(_welcome(gw.address, token))
    assert frame["welcome"]["userId"] == "alice", frame

    namespace = {}
    exec(_code_block_after(guide, "In Python:", "python"), namespace)
    token = namespace["parley_token"](secret, "alice", device="recipe")
    frame = asyncio.run(_welcome(gw.address, token))
    assert frame["welcome"]["userId"] == "alice", frame


def test_backup_and_restore_recipes_in_the_operators_guide(tmp_path, procs, pb):
    with open(os.path.join(DOCS, "operators.md"), encoding="utf-8") as f:
        guide = f.read()
    svc = procs.add(harness.start_service(str(tmp_path)))
    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    admin.call("CreateUser", id="bob")

    # Sends go on throughout the backup.
    acked = []
    warm = threading.Event()
    stop = threading.Event()

    def send():
        sender = harness.AdminClient(svc)
        while not stop.is_set():
            ack = sender.call("SendMessage", **{"from": "alice", "text": "x"},
                              to=pb.client.Recipient(user="bob"))
            acked.append(ack.seq)
            if len(acked) >= 200:
                warm.set()
        sender.close()

    # The guide's commands, with the binaries just built.
    path = os.pathsep.join([os.path.dirname(harness.bin_path(b)) for b in
                            ("tools/parleyctl", "service/parley-service")] +
                           [os.environ.get("PATH", "")])
    env = dict(os.environ, PATH=path, DATA=svc.data_dir,
               PARLEY_ADMIN_ADDR=svc.admin_address,
               PARLEY_ADMIN_KEY=svc.admin_key)
    backups = tmp_path / "backups"
    backups.mkdir()
    thread = threading.Thread(target=send)
    thread.start()
    try:
        assert warm.wait(60)
        acked_before = len(acked)
        shell = _code_block_after(guide, "Back up while the service runs", "sh")
        out = subprocess.run(["bash", "-c", shell.replace("/backups/",
                                                          f"{backups}/")],
                             check=True, timeout=60, env=env, text=True,
                             stdout=subprocess.PIPE).stdout
        acked_after = len(acked)
    finally:
        stop.set()
        thread.join()
    admin.close()

    [copy] = glob.glob(str(backups / "parley-*.db"))
    assert out.startswith(f"wrote {copy}: integrity ok\n"), out
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = db.execute(
        "SELECT seq FROM messages WHERE sender = 'alice' ORDER BY seq").fetchall()
    db.close()
    assert f"messages         {len(stored)}\n" in out, out
    # Every send acknowledged before the backup began, gapless from 1.
    assert acked_before <= len(stored) <= acked_after + 1
    assert [seq for (seq,) in stored] == list(range(1, len(stored) + 1))

    assert svc.stop() == 0
    shell = _code_block_after(guide, "To restore, stop the service", "sh")
    out = subprocess.run(["bash", "-c", re.sub(r"/backups/\S+\.db", copy,
                                               shell)],
                         check=True, timeout=60, env=env, text=True,
                         stdout=subprocess.PIPE).stdout
    assert f"messages           {len(stored)}\n" in out, out
    db = sqlite3.connect(os.path.join(svc.data_dir, "parley.db"))
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (
        len(stored),)
    db.close()
