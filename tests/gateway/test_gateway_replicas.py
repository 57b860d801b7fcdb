"""One parley-gateway in front of two parley-service replicas: sessions spread
over both, and when one is SIGKILLed (or drains on SIGTERM) its sessions move
to the other through re-announce and resume, with no client socket closed.

The two services each get a copy of one seeded SQLite store, so they share its
generation (a re-announce into another generation would be refused) but not
its later writes: messages are only sent after the failover, to the survivor.
"""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
import websockets

import harness

USERS = [f"u{i}" for i in range(12)]


def seeded_data_dirs(tmp_path, procs, count):
    """Seeds one store with USERS and a sender, stops its service cleanly, and
    returns `count` data directories each holding a copy of it."""
    seed_dir = os.path.join(tmp_path, "seed")
    seed = procs.add(harness.start_service(str(tmp_path), data_dir=seed_dir,
                                           name="seed"))
    admin = harness.AdminClient(seed)
    for user in USERS + ["sender"]:
        admin.call("CreateUser", id=user)
    admin.close()
    assert seed.stop(signal.SIGTERM) == 0
    copies = []
    for i in range(count):
        copy = os.path.join(tmp_path, f"replica{i}")
        shutil.copytree(seed_dir, copy)
        copies.append(copy)
    return copies


def list_sessions(service):
    admin = harness.AdminClient(service)
    try:
        return {s.session_id: s.user_id
                for s in admin.call("ListSessions").sessions}
    finally:
        admin.close()


def wait_until(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Client:
    """A JSON-subprotocol client that records every frame and its close."""

    def __init__(self, ws):
        self.ws = ws
        self.frames = []
        self.closed = None
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self):
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self.changed.set()
        except websockets.ConnectionClosed:
            pass
        self.closed = (self.ws.close_code, self.ws.close_reason)
        self.changed.set()

    async def wait_for(self, predicate, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {what}: {self.frames}"
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except asyncio.TimeoutError:
                pass


# SIGKILL: the streams just break. SIGTERM: the replica drains, ending its
# streams with UNAVAILABLE after flushing what it acknowledged.
@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGTERM],
                         ids=["sigkill", "sigterm"])
def test_sessions_move_to_the_surviving_replica_without_closing_clients(
        tmp_path, procs, stop_signal):
    data_a, data_b = seeded_data_dirs(str(tmp_path), procs, 2)
    svc_a = procs.add(harness.start_service(str(tmp_path), data_dir=data_a,
                                            name="service-a"))
    svc_b = procs.add(harness.start_service(str(tmp_path), data_dir=data_b,
                                            name="service-b"))
    gw = procs.add(harness.start_gateway(
        str(tmp_path), f"{svc_a.link_address},{svc_b.link_address}",
        extra=["--upstream_streams=2", "--upstream_backoff_max=500ms"],
        wait_upstream=False))
    gw.wait_for_event("gateway.replica_up", replica=svc_a.link_address)
    gw.wait_for_event("gateway.replica_up", replica=svc_b.link_address)

    async def scenario():
        clients = {}
        for user in USERS:
            token = harness.mint_token(svc_a.token_secret, user)
            ws = await websockets.connect(f"ws://{gw.address}/?token={token}")
            clients[user] = Client(ws)
        for user, client in clients.items():
            await client.wait_for(
                lambda c: any("welcome" in f for f in c.frames),
                f"{user}'s welcome")
        session_of = {user: next(f["welcome"]["sessionId"] for f in c.frames
                                 if "welcome" in f)
                      for user, c in clients.items()}
        loop = asyncio.get_running_loop()

        # Both replicas hold sessions (12 sessions over 4 streams: all on one
        # replica has odds of 1 in 2048), and together all of them.
        on_a = await loop.run_in_executor(None, list_sessions, svc_a)
        on_b = await loop.run_in_executor(None, list_sessions, svc_b)
        assert on_a and on_b, (on_a, on_b)
        assert set(on_a) | set(on_b) == set(session_of.values())
        assert not set(on_a) & set(on_b)
        print(f"sessions: {len(on_a)} on a, {len(on_b)} on b")

        # The replica holding more sessions is stopped.
        dead, survivor = (svc_a, svc_b) if len(on_a) >= len(on_b) else (
            svc_b, svc_a)
        moved = len(on_a) if dead is svc_a else len(on_b)
        start = time.monotonic()
        await loop.run_in_executor(None, lambda: dead.stop(stop_signal))
        await loop.run_in_executor(
            None, lambda: wait_until(
                lambda: set(list_sessions(survivor)) == set(
                    session_of.values()),
                "every session in the survivor's ListSessions"))
        print(f"{moved} sessions moved in "
              f"{(time.monotonic() - start) * 1000:.0f} ms")
        for user, client in clients.items():
            assert client.closed is None, f"{user} closed: {client.closed}"

        # A message to each user, sent after the failover, reaches its client.
        admin = harness.AdminClient(survivor)
        try:
            for user in USERS:
                await loop.run_in_executor(None, lambda u=user: admin.call(
                    "SendMessage", **{"from": "sender", "to": {"user": u},
                                      "text": f"to {u} after failover"}))
        finally:
            admin.close()
        for user, client in clients.items():
            text = f"to {user} after failover"
            await client.wait_for(
                lambda c, text=text: any(
                    f.get("message", {}).get("text") == text
                    for f in c.frames),
                f"{user}'s message after the failover")
        for user, client in clients.items():
            assert client.closed is None, f"{user} closed: {client.closed}"
            errors = [f for f in client.frames if "error" in f]
            assert not errors, f"{user} got errors: {errors}"
            await client.ws.close()
        return dead, survivor, moved

    dead, survivor, moved = asyncio.run(scenario())
    down = gw.wait_for_event("gateway.replica_down", timeout=1,
                             replica=dead.link_address)
    assert down["replicas_up"] == "1"
    assert down["sessions_moving"] == str(moved)
    print(f"gateway logged replica_down for {dead.link_address}: {down}")
    # The metrics name each replica.
    with urllib.request.urlopen(f"http://{gw.metrics_address}/metrics",
                                timeout=5) as response:
        metrics = response.read().decode()
    assert (f'parley_gateway_upstream_streams_up'
            f'{{replica="{dead.link_address}"}} 0' in metrics)
    assert (f'parley_gateway_upstream_streams_up'
            f'{{replica="{survivor.link_address}"}} 2' in metrics)
    assert (f'parley_gateway_upstream_sessions_moved_total'
            f'{{replica="{survivor.link_address}"}} {moved}' in metrics)


def test_bad_service_address_list_is_refused_naming_the_entry():
    result = subprocess.run(
        [harness.bin_path("gateway/parley-gateway"),
         "--listen_address=127.0.0.1:0",
         "--service_address=127.0.0.1:7400,service-b,[::1]:7401"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    assert ('--service_address entry "service-b" has no port'
            in result.stderr), result.stderr
