"""Resource bounds of parley-gateway as a process, measured: a slow consumer
cannot grow the gateway's memory past its buffer cap, and an idle
authenticated connection costs a few KiB. Real parley-service upstream."""

import asyncio
import base64
import json
import os
import signal
import socket
import time
import urllib.request

import websockets

import harness


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def metric(address, name):
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                if line.split(" ")[0] == name or name.endswith("}"):
                    return float(line.split()[-1])
    return 0.0


def start_stack(tmp_path, procs, service_flags=(), gateway_flags=()):
    svc = procs.add(harness.start_service(
        str(tmp_path), extra=["--max_text_bytes=60000",
                              "--max_sessions_per_user=2000",
                              *service_flags]))
    gw = procs.add(harness.start_gateway(
        str(tmp_path), svc.link_address, extra=list(gateway_flags)))
    gw.wait_for_event("gateway.upstream_up")
    admin = harness.AdminClient(svc)
    for user in ("alice", "bob", "carol"):
        admin.call("CreateUser", id=user)
    admin.close()
    return svc, gw


def raw_upgrade(address, path, rcvbuf=4096):
    """A WebSocket that completes the handshake and then never reads."""
    host, port = address.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {address}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
               ).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_slow_consumer_is_cut_off_and_gateway_memory_stays_bounded(
        tmp_path, procs):
    cap = 1 << 20
    svc, gw = start_stack(tmp_path, procs, gateway_flags=[
        f"--send_buffer_cap_bytes={cap}", "--rate_limit_per_second=10000",
        "--rate_limit_burst=10000", "--rate_limit_bytes_per_second=1e12",
        "--rate_limit_bytes_burst=1e12", "--close_timeout=1s"])
    token = lambda u: harness.mint_token(svc.token_secret, u)
    slow = raw_upgrade(gw.address, f"/?token={token('bob')}")
    before = rss_bytes(gw.pid)
    count, size = 1200, 50_000  # 60 MB for a reader that reads nothing.

    async def flood():
        async with websockets.connect(
                f"ws://{gw.address}/?token={token('alice')}") as ws:
            json.loads(await ws.recv())  # welcome
            acks = 0
            # At most 8 sends in flight: the sender's own unacked sends are
            # held by the gateway too (bounded by --max_buffered_bytes), and
            # this test is about the receiver.
            for i in range(count):
                while i - acks >= 8:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    assert "error" not in frame, frame
                    acks += "ack" in frame
                await ws.send(json.dumps({"send": {
                    "clientMsgId": f"f{i}", "to": {"user": "bob"},
                    "text": "x" * size}}))
            while acks < count:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
                assert "error" not in frame, frame
                acks += "ack" in frame

    start = time.monotonic()
    asyncio.run(flood())
    deadline = time.monotonic() + 30
    while metric(gw.metrics_address, 'parley_gateway_closes_total{code="1013"}') < 1:
        assert time.monotonic() < deadline, "slow consumer never closed"
        time.sleep(0.05)
    peak = rss_bytes(gw.pid)
    growth = peak - before
    print(f"slow consumer: {count * size / 1e6:.0f} MB sent to a non-reader; "
          f"gateway RSS {before / 1e6:.1f} -> {peak / 1e6:.1f} MB "
          f"(+{growth / 1e6:.1f} MB), cut off after "
          f"{time.monotonic() - start:.1f}s")
    # The cap (1 MiB) plus a frame, plus allocator and gRPC slack: far below
    # the 20 MB that an unbounded queue would hold.
    assert growth < 10 * cap
    slow.close()


def test_idle_authenticated_connections_cost_little_memory(tmp_path, procs):
    svc, gw = start_stack(tmp_path, procs)
    token = harness.mint_token(svc.token_secret, "bob")
    n = 1000

    async def hold():
        before = rss_bytes(gw.pid)
        conns = []
        for _ in range(n):
            ws = await websockets.connect(f"ws://{gw.address}/?token={token}",
                                          ping_interval=None)
            json.loads(await ws.recv())
            conns.append(ws)
        after = rss_bytes(gw.pid)
        open_now = metric(gw.metrics_address, "parley_gateway_connections_open")
        for ws in conns:
            await ws.close()
        return before, after, open_now

    before, after, open_now = asyncio.run(hold())
    per = (after - before) / n
    print(f"{n} idle authenticated connections: gateway RSS "
          f"{before / 1e6:.1f} -> {after / 1e6:.1f} MB, "
          f"{per / 1024:.1f} KiB per connection")
    assert open_now == n
    # Measured 10.9 KiB (fastbuild); the guard leaves room for noise.
    assert per < 16 * 1024


def test_frames_held_for_a_stalled_service_are_capped_gateway_wide(
        tmp_path, procs):
    per_session, total, size = 300_000, 500_000, 50_000
    svc, gw = start_stack(tmp_path, procs, gateway_flags=[
        f"--max_buffered_bytes={per_session}",
        f"--max_held_bytes_total={total}"])
    token = lambda u: harness.mint_token(svc.token_secret, u)

    def send(ws, user, i):
        return ws.send(json.dumps({"send": {
            "clientMsgId": f"{user}{i}", "to": {"user": "carol"},
            "text": "x" * size}}))

    async def run():
        alice = await websockets.connect(
            f"ws://{gw.address}/?token={token('alice')}", max_size=None)
        bob = await websockets.connect(
            f"ws://{gw.address}/?token={token('bob')}", max_size=None)
        json.loads(await alice.recv())  # welcome
        json.loads(await bob.recv())
        # The service stops answering: every Send stays held by the gateway.
        svc.send_signal(signal.SIGSTOP)
        try:
            for i in range(5):  # ~250 KB, within alice's own 300 KB.
                await send(alice, "a", i)
            deadline = time.monotonic() + 10
            while metric(gw.metrics_address, "parley_gateway_held_bytes") < 5 * size:
                assert time.monotonic() < deadline, "alice's sends not held"
                await asyncio.sleep(0.02)
            for i in range(5):  # The fifth would pass 500 KB in all.
                await send(bob, "b", i)
            frame = json.loads(await asyncio.wait_for(bob.recv(), 10))
            held = metric(gw.metrics_address, "parley_gateway_held_bytes")
        finally:
            svc.send_signal(signal.SIGCONT)
        # Everything held is acknowledged once the service runs again.
        acks = {"alice": 0, "bob": 0}
        for name, ws, want in (("alice", alice, 5), ("bob", bob, 4)):
            while acks[name] < want:
                got = json.loads(await asyncio.wait_for(ws.recv(), 30))
                assert "error" not in got, got
                acks[name] += "ack" in got
        await alice.close()
        await bob.close()
        return frame, held

    frame, held = asyncio.run(run())
    # Bob is far below his own limit: the gateway-wide one refused him.
    assert frame["error"]["code"] == "ERROR_CODE_BACKPRESSURE", frame
    assert frame["error"]["clientMsgId"] == "b4", frame
    assert "gateway" in frame["error"]["message"], frame
    assert 9 * size < held <= total, held
    deadline = time.monotonic() + 10
    while metric(gw.metrics_address, "parley_gateway_held_bytes") != 0:
        assert time.monotonic() < deadline, "held bytes never returned"
        time.sleep(0.05)
