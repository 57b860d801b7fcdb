"""The scaled-out deployment, for real: deploy/cluster/docker-compose.yml on
Debian's Docker daemon (PostgreSQL, nats-server, two service replicas, two
gateways, all built from deploy/Dockerfile), clients on the host. Alice
talks through gateway 1 and bob through gateway 2 while each replica in turn
is SIGKILLed and started again: no socket closes, every acknowledged message
arrives once.

Slow (it builds the images); tools/test.sh runs it unless PARLEY_SKIP_DOCKER=1.
"""

import asyncio
import json
import os
import secrets
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose_stack  # noqa: E402
import docker_env  # noqa: E402
import harness  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("PARLEY_SKIP_DOCKER") == "1",
                                reason="PARLEY_SKIP_DOCKER=1")

COMPOSE_FILE = os.path.join(harness.REPO, "deploy", "cluster",
                            "docker-compose.yml")
PROJECT = "parleyclustertest"
SERVICES = ("postgres", "service-1", "service-2", "gateway-1", "gateway-2")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    log_dir = os.environ.get("PARLEY_ARTIFACTS") or str(
        tmp_path_factory.mktemp("deploy"))
    log_dir = os.path.join(log_dir, "deploy-cluster")
    os.makedirs(log_dir, exist_ok=True)
    env = docker_env.DockerEnv(log_dir)
    env.start()
    s = compose_stack.ComposeStack(
        log_dir, COMPOSE_FILE, PROJECT,
        ("PARLEY_GATEWAY_PORT", "PARLEY_GATEWAY2_PORT", "PARLEY_ADMIN_PORT",
         "PARLEY_ADMIN2_PORT"),
        extra_env=f"PARLEY_PG_PASSWORD={secrets.token_hex(16)}\n")
    s.admin_ports = ("PARLEY_ADMIN_PORT", "PARLEY_ADMIN2_PORT")
    try:
        s.compose("build", timeout=3600)
        s.compose("up", "-d")
        for service in SERVICES:
            s.wait_healthy(service, timeout=180)
        yield s
    finally:
        s.compose("logs", "--no-color", check=False)
        s.compose("down", "-v", check=False)
        env.stop()


def test_the_database_is_reached_with_the_password_only(cluster):
    # The replicas' --store URL names no password: libpq takes it from
    # PGPASSWORD, which the entrypoint sets from PARLEY_PG_PASSWORD.
    out = cluster.compose("exec", "-T", "service-1", "sh", "-c",
                          "echo $PARLEY_STORE")
    assert out.strip() == "postgres://parley@postgres:5432/parley"


async def _next(ws, kind, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(
            ws.recv(), deadline - time.monotonic()))
        if kind in frame:
            return frame[kind]


async def _chat_while_replicas_die(cluster, token_a, token_b):
    import websockets  # Debian's python3-websockets.
    ports = (cluster.ports["PARLEY_GATEWAY_PORT"],
             cluster.ports["PARLEY_GATEWAY2_PORT"])
    a = await websockets.connect(
        f"ws://127.0.0.1:{ports[0]}/?token={token_a}",
        subprotocols=["parley.v1.json"])
    b = await websockets.connect(
        f"ws://127.0.0.1:{ports[1]}/?token={token_b}",
        subprotocols=["parley.v1.json"])
    await _next(a, "welcome")
    await _next(b, "welcome")
    acked, received = {}, {}

    async def read_a():
        while True:
            frame = json.loads(await a.recv())
            if "ack" in frame:
                acked[frame["ack"]["clientMsgId"]] = frame["ack"]

    async def read_b():
        while True:
            m = await _next(b, "message", timeout=300)
            received.setdefault(m["clientMsgId"], set()).add(m["inboxSeq"])

    readers = [asyncio.ensure_future(read_a()),
               asyncio.ensure_future(read_b())]
    loop = asyncio.get_running_loop()
    total = 90
    faults = {20: "service-1", 55: "service-2"}
    pending = []
    for i in range(total):
        await a.send(json.dumps({"send": {
            "clientMsgId": f"m{i}", "to": {"user": "bob"},
            "text": f"message {i}"}}))
        if i in faults:
            replica = faults[i]
            pending.append(loop.run_in_executor(None, lambda r=replica: (
                cluster.compose("kill", "-s", "SIGKILL", r),
                cluster.compose("start", r))))
        await asyncio.sleep(0.05)
    await asyncio.gather(*pending)
    # What was sent while a replica was away is re-sent by the gateway; a
    # client whose ack is late sends again (idempotent by clientMsgId).
    deadline = time.monotonic() + 120
    while len(acked) < total and time.monotonic() < deadline:
        for i in range(total):
            if f"m{i}" not in acked:
                await a.send(json.dumps({"send": {
                    "clientMsgId": f"m{i}", "to": {"user": "bob"},
                    "text": f"message {i}"}}))
        await asyncio.sleep(1)
    while set(received) < set(acked) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for r in readers:
        r.cancel()
    open_sockets = a.open and b.open
    await a.close()
    await b.close()
    return acked, received, open_sockets


def test_chat_across_gateways_survives_each_replica_being_killed(cluster):
    admin = cluster.admin(cluster.admin_ports[0])
    for user in ("alice", "bob"):
        admin.call("CreateUser", id=user)
    token_a = admin.call("IssueToken", user_id="alice").token
    token_b = admin.call("IssueToken", user_id="bob").token
    admin.close()
    acked, received, open_sockets = asyncio.run(
        _chat_while_replicas_die(cluster, token_a, token_b))
    assert open_sockets, "a client socket closed when a replica died"
    assert len(acked) == 90
    missing = sorted(set(acked) - set(received))
    assert not missing, f"acknowledged but never delivered: {missing}"
    doubled = sorted(k for k, seqs in received.items() if len(seqs) > 1)
    assert not doubled, f"delivered twice: {doubled}"
    for service in SERVICES:
        cluster.wait_healthy(service)


def test_either_replica_lists_the_sessions_of_the_whole_cluster(cluster):
    async def connect_both():
        import websockets
        admin = cluster.admin(cluster.admin_ports[1])
        for user in ("carol", "dave"):
            admin.call("CreateUser", id=user)
        tokens = [admin.call("IssueToken", user_id=u).token
                  for u in ("carol", "dave")]
        admin.close()
        sockets = []
        for port, token in zip((cluster.ports["PARLEY_GATEWAY_PORT"],
                                cluster.ports["PARLEY_GATEWAY2_PORT"]),
                               tokens):
            ws = await websockets.connect(
                f"ws://127.0.0.1:{port}/?token={token}",
                subprotocols=["parley.v1.json"])
            await _next(ws, "welcome")
            sockets.append(ws)
        listed = []
        for port in cluster.admin_ports:
            client = cluster.admin(port)
            answer = await asyncio.to_thread(client.call, "ListSessions")
            listed.append({s.user_id for s in answer.sessions})
            client.close()
        for ws in sockets:
            await ws.close()
        return listed

    for users in asyncio.run(connect_both()):
        assert {"carol", "dave"} <= users


def test_the_service_image_holds_the_migration_tool(cluster):
    out = cluster.compose("exec", "-T", "service-1", "parley-store-migrate",
                          "--help", check=False)
    assert "--from" in out and "--to" in out, out
