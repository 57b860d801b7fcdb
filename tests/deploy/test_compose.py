"""The docker-compose deployment, for real: Debian's Docker daemon, images
built from deploy/Dockerfile, the stack from deploy/docker-compose.yml, and
clients on the host talking to the published ports.

Slow (it builds the images with Bazel inside Docker); tools/test.sh runs it
unless PARLEY_SKIP_DOCKER=1.
"""

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose_stack  # noqa: E402
import docker_env  # noqa: E402
import harness  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("PARLEY_SKIP_DOCKER") == "1",
                                reason="PARLEY_SKIP_DOCKER=1")

COMPOSE_FILE = os.path.join(harness.REPO, "deploy", "docker-compose.yml")
README = os.path.join(harness.REPO, "deploy", "README.md")
PROJECT = "parleytest"


class Stack(compose_stack.ComposeStack):
    def __init__(self, log_dir):
        super().__init__(log_dir, COMPOSE_FILE, PROJECT,
                         ("PARLEY_GATEWAY_PORT", "PARLEY_ADMIN_PORT",
                          "PARLEY_METRICS_PORT", "PARLEY_GATEWAY_METRICS_PORT"))
        self.gateway_port = self.ports["PARLEY_GATEWAY_PORT"]
        self.admin_port = self.ports["PARLEY_ADMIN_PORT"]
        self.metrics_port = self.ports["PARLEY_METRICS_PORT"]
        self.admin_address = f"127.0.0.1:{self.admin_port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    for binary in ("service/parley-service", "gateway/parley-gateway"):
        try:
            harness.bin_path(binary)
        except FileNotFoundError as e:
            pytest.skip(f"nothing to deploy yet: {e}")
    log_dir = os.environ.get("PARLEY_ARTIFACTS") or str(
        tmp_path_factory.mktemp("deploy"))
    log_dir = os.path.join(log_dir, "deploy")
    os.makedirs(log_dir, exist_ok=True)
    env = docker_env.DockerEnv(log_dir)
    env.start()
    s = Stack(log_dir)
    try:
        s.compose("build", timeout=3600)
        s.compose("up", "-d")
        s.wait_healthy("service")
        s.wait_healthy("gateway")
        yield s
    finally:
        s.compose("logs", "--no-color", check=False)
        s.compose("down", "-v", check=False)
        env.stop()


def test_example_secrets_are_refused_unless_demo(stack):
    base = [docker_env.DOCKER, "run", "--rm",
            "-e", "PARLEY_TOKEN_SECRET=example-token-secret-change-me",
            "-e", "PARLEY_ADMIN_KEY=example-admin-key-change-me"]
    refused = docker_env.run(base + ["parley/service:test"], check=False)
    assert refused.returncode == 78, refused.stdout
    assert "example secrets" in refused.stdout
    demo = docker_env.run(base + ["-e", "PARLEY_DEMO=1", "--entrypoint",
                                  "parley-entrypoint", "parley/service:test",
                                  "true"], check=False)
    assert demo.returncode == 0, demo.stdout


def test_example_secrets_stop_compose_up_at_once_without_a_restart_loop(
        stack, tmp_path):
    """`up` with the example env file: config-check exits 78 and says why;
    the service never starts, so nothing restarts in a loop."""
    bad = compose_stack.ComposeStack(
        str(tmp_path), COMPOSE_FILE, PROJECT + "bad",
        ("PARLEY_GATEWAY_PORT", "PARLEY_ADMIN_PORT", "PARLEY_METRICS_PORT",
         "PARLEY_GATEWAY_METRICS_PORT"))
    with open(os.path.join(harness.REPO, "deploy", "parley.env.example"),
              encoding="utf-8") as f:
        example = f.read()
    with open(bad.env_file, "w", encoding="utf-8") as f:
        f.write(example)
    try:
        out = bad.compose("up", "-d", check=False, timeout=300)
        assert "config-check" in out and "78" in out, out
        logs = bad.compose("logs", "--no-color", "config-check")
        assert "refusing to start with the example secrets" in logs, logs
        assert bad.container("service") == ""
    finally:
        bad.compose("down", "-v", check=False)


def test_wss_through_the_compose_stack(stack, tmp_path):
    """The documented TLS path: certificates in the mounted tls directory,
    their paths in gateway.env; clients connect with wss."""
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem"),
         "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    for f in tls.iterdir():  # The image's user (uid 10001) reads them.
        f.chmod(0o644)
    tls.chmod(0o755)
    s = compose_stack.ComposeStack(
        str(tmp_path), COMPOSE_FILE, PROJECT + "tls",
        ("PARLEY_GATEWAY_PORT", "PARLEY_ADMIN_PORT", "PARLEY_METRICS_PORT",
         "PARLEY_GATEWAY_METRICS_PORT"))
    with open(s.gateway_env_file, "a", encoding="utf-8") as f:
        f.write("PARLEY_TLS_CERT=/etc/parley/tls/cert.pem\n"
                "PARLEY_TLS_KEY=/etc/parley/tls/key.pem\n")
    s.env["PARLEY_TLS_DIR"] = str(tls)
    try:
        s.compose("up", "-d")
        s.wait_healthy("service")
        s.wait_healthy("gateway")
        admin = s.admin()
        admin.call("CreateUser", id="tls-user")
        token = admin.call("IssueToken", user_id="tls-user").token
        admin.close()

        async def hello():
            import ssl

            import websockets
            context = ssl.create_default_context(cafile=str(tls / "cert.pem"))
            port = s.ports["PARLEY_GATEWAY_PORT"]
            async with websockets.connect(
                    f"wss://127.0.0.1:{port}/?token={token}",
                    subprotocols=["parley.v1.json"], ssl=context) as ws:
                return json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert asyncio.run(hello())["welcome"]["userId"] == "tls-user"
    finally:
        s.compose("down", "-v", check=False)


def test_containers_are_hardened(stack):
    for service in ("service", "gateway"):
        cid = stack.container(service)
        out = docker_env.run([docker_env.DOCKER, "inspect", "--format",
                              "{{json .HostConfig}}", cid]).stdout
        host = json.loads(out)
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["LogConfig"]["Config"]["max-size"] == "10m", service
        assert host["Memory"] > 0, service


def test_images_run_as_non_root(stack):
    for service in ("service", "gateway"):
        user = docker_env.run([docker_env.DOCKER, "inspect", "--format",
                               "{{.Config.User}}", f"parley/{service}:test"])
        assert user.stdout.strip() == "parley"


def test_admin_port_is_published_on_loopback_only(stack):
    out = stack.compose("port", "service", "7401")
    assert out.strip().startswith("127.0.0.1:"), out


def test_gateway_metrics_are_on_their_own_loopback_port(stack):
    out = stack.compose("port", "gateway", "9402")
    assert out.strip().startswith("127.0.0.1:"), out
    port = stack.ports["PARLEY_GATEWAY_METRICS_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=10) as r:
        body = r.read().decode()
    assert "parley_gateway_connections_open" in body
    assert "parley_build_info{" in body
    try:
        urllib.request.urlopen(
            f"http://127.0.0.1:{stack.gateway_port}/metrics", timeout=10)
        raise AssertionError("/metrics is served on the public port")
    except urllib.error.HTTPError as e:
        assert e.code == 404


async def _recv_frame(ws, kind, timeout=30):
    """Next frame of this kind (other kinds are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(
            ws.recv(), deadline - time.monotonic()))
        if kind in frame:
            return frame[kind]


async def _chat_through_service_restart(stack, token_a, token_b):
    import websockets  # Debian's python3-websockets.
    url = f"ws://127.0.0.1:{stack.gateway_port}/?token="
    async with websockets.connect(url + token_a, subprotocols=["parley.v1.json"]) as a, \
            websockets.connect(url + token_b, subprotocols=["parley.v1.json"]) as b:
        await _recv_frame(a, "welcome")
        await _recv_frame(b, "welcome")

        acked, received = {}, {}

        async def read_b():
            while True:
                m = await _recv_frame(b, "message", timeout=120)
                # A repeat of an inboxSeq is ignored by the inbox rule; the
                # same send under two inboxSeqs would be a doubled message.
                received.setdefault(m["clientMsgId"], set()).add(m["inboxSeq"])

        async def read_a():
            while True:
                frame = json.loads(await a.recv())
                if "ack" in frame:
                    acked[frame["ack"]["clientMsgId"]] = frame["ack"]

        readers = [asyncio.ensure_future(read_b()), asyncio.ensure_future(read_a())]
        total = 60
        loop = asyncio.get_running_loop()
        restart = None
        for i in range(total):
            await a.send(json.dumps({"send": {
                "clientMsgId": f"m{i}", "to": {"user": "bob"},
                "text": f"message {i}"}}))
            if i == total // 3:
                restart = loop.run_in_executor(
                    None, lambda: stack.compose("restart", "service"))
            await asyncio.sleep(0.05)  # Paced traffic across the restart.
        await restart
        # Resend what was never acked (idempotent by clientMsgId).
        deadline = time.monotonic() + 90
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
        assert a.open and b.open, "a client socket closed during the restart"
        return acked, received


def test_two_clients_chat_and_survive_a_service_restart(stack):
    admin = harness.AdminClient(stack)
    for user in ("alice", "bob"):
        admin.call("CreateUser", id=user, display_name=user.title())
    token_a = admin.call("IssueToken", user_id="alice").token
    token_b = admin.call("IssueToken", user_id="bob").token
    admin.close()
    acked, received = asyncio.run(
        _chat_through_service_restart(stack, token_a, token_b))
    assert len(acked) == 60
    missing = sorted(set(acked) - set(received))
    assert not missing, f"acknowledged but never delivered: {missing}"
    doubled = sorted(k for k, seqs in received.items() if len(seqs) > 1)
    assert not doubled, f"delivered twice: {doubled}"


def _readme_recipe(marker):
    """The first sh block after `marker` in deploy/README.md."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.compile(r"```sh\n(.*?)```", re.S).search(
        text, text.index(marker)).group(1)


def _run_recipe(stack, recipe, cwd=harness.REPO, **replace):
    """Runs a README recipe on the test's project (`-p parleytest`, its own
    volumes), with `replace`'s strings swapped in; returns its output."""
    script = recipe.replace("docker-compose -f deploy/docker-compose.yml",
                            f"docker-compose -p {PROJECT} -f {COMPOSE_FILE}")
    for old, new in replace.items():
        script = script.replace(old, new)
    result = subprocess.run(["bash", "-e", "-c", script], env=stack.env,
                            cwd=cwd, text=True, timeout=600,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with open(os.path.join(stack.log_dir, "compose.log"), "a") as log:
        log.write(f"$ {script}\n{result.stdout}\n")
    assert result.returncode == 0, f"{script}\n{result.stdout}"
    return result.stdout


def test_backup_and_restore_recipes_in_the_readme(stack):
    admin = harness.AdminClient(stack)
    pb = harness.protos()
    for user in ("carol", "dave"):
        admin.call("CreateUser", id=user)

    def send(n, tag):
        for i in range(n):
            admin.call("SendMessage", **{"from": "carol"},
                       to=pb.client.Recipient(user="dave"), text=tag,
                       client_msg_id=f"{tag}-{i}")

    send(20, "before")
    stats = admin.call("GetStats")
    admin.close()

    out = _run_recipe(stack, _readme_recipe("Back up while the stack runs"))
    path = re.search(r"^wrote (/var/backups/parley/parley-\S+\.db): "
                     r"integrity ok$", out, re.M).group(1)
    assert re.search(rf"^messages +{stats.stored_messages}$", out, re.M), out
    assert re.search(rf"^generation +{stats.store_generation}$", out, re.M), out
    example = "/var/backups/parley/parley-2026-12-04-120000.db"
    _run_recipe(stack, _readme_recipe("Copy it out of"), cwd=stack.log_dir,
                **{example: path})
    copy = os.path.join(stack.log_dir, os.path.basename(path))
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone() == (
        stats.stored_messages,)
    db.close()

    admin = harness.AdminClient(stack)
    send(5, "after")
    admin.close()
    out = _run_recipe(stack, _readme_recipe("To restore, stop the service"),
                      **{example: path})
    assert f"restored {path} into /var/lib/parley/parley.db: integrity ok" in out
    new_generation = re.search(r"^new generation +(\w+)$", out, re.M).group(1)
    assert new_generation != stats.store_generation
    stack.wait_healthy("service")
    admin = harness.AdminClient(stack)
    restored = admin.call("GetStats")
    admin.close()
    assert restored.stored_messages == stats.stored_messages
    assert restored.store_generation == new_generation
