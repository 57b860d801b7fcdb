"""parley-gateway as a process: drain on SIGTERM, configuration from the
environment, HTTP endpoints. Real parley-service upstream; clients on Debian's
python3-websockets."""

import asyncio
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import websockets

import harness


@pytest.fixture
def service(tmp_path, procs):
    svc = procs.add(harness.start_service(str(tmp_path)))
    admin = harness.AdminClient(svc)
    for user in ("alice", "bob"):
        admin.call("CreateUser", id=user)
    admin.close()
    return svc


def start_gateway(tmp_path, procs, service, extra=(), env=None, name="gateway"):
    argv = [harness.bin_path("gateway/parley-gateway"),
            "--listen_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
            f"--service_address={service.link_address}", *extra]
    gw = procs.add(harness.Proc(name, argv, str(tmp_path), env=env))
    ready = gw.wait_for_event("gateway.ready")
    gw.address = ready["address"]
    gw.metrics_address = ready["metrics_address"]
    gw.wait_for_event("gateway.upstream_up")
    return gw


def get(address, path):
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_sigterm_closes_clients_1001_and_exits_within_deadline(
        tmp_path, procs, service):
    gw = start_gateway(tmp_path, procs, service, ["--drain_timeout=5s"])
    token = harness.mint_token(service.token_secret, "alice")

    async def scenario():
        clients = [await websockets.connect(f"ws://{gw.address}/?token={token}")
                   for _ in range(3)]
        for ws in clients:
            assert "welcome" in await asyncio.wait_for(ws.recv(), 10)
        start = time.monotonic()
        gw.send_signal(signal.SIGTERM)
        for ws in clients:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001
            assert ws.close_reason == "going away"
        return start

    start = asyncio.run(scenario())
    assert gw.proc.wait(10) == 0
    elapsed = time.monotonic() - start
    assert elapsed < 5, f"drain took {elapsed:.1f}s"
    stopped = gw.wait_for_event("gateway.stopped", timeout=1)
    print(f"drain of 3 clients took {stopped['drain_ms']} ms")
    # The service was told the sessions ended (flushed before exit).
    admin = harness.AdminClient(service)
    deadline = time.monotonic() + 10
    while admin.call("ListSessions").sessions and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not admin.call("ListSessions").sessions
    admin.close()


def test_environment_overrides_flags(tmp_path, procs, service):
    gw = start_gateway(tmp_path, procs, service,
                       env={"PARLEY_AUTH_TIMEOUT": "300ms"})

    async def scenario():
        start = time.monotonic()
        async with websockets.connect(f"ws://{gw.address}/") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 4008
        return time.monotonic() - start

    assert asyncio.run(scenario()) < 3


def test_bad_token_closes_4001_and_expired_token_too(tmp_path, procs, service):
    gw = start_gateway(tmp_path, procs, service)
    expired = harness.mint_token(service.token_secret, "alice", ttl=-60)
    forged = harness.mint_token("not-the-secret", "alice")

    async def close_of(token):
        async with websockets.connect(f"ws://{gw.address}/?token={token}") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return ws.close_code, ws.close_reason

    for token in (expired, forged, "garbage"):
        code, reason = asyncio.run(close_of(token))
        assert code == 4001, (token, code, reason)
        assert reason


def test_http_endpoints(tmp_path, procs, service):
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<title>Parley</title>")
    (web / "README.md").write_text("# not served")
    (web / "page.test.mjs").write_text("// not served")
    gw = start_gateway(tmp_path, procs, service, [f"--web_root={web}"])
    assert get(gw.address, "/healthz")[0] == 200
    assert get(gw.address, "/readyz")[0] == 200
    # Metrics on their own listener, not on the public port.
    assert get(gw.address, "/metrics")[0] == 404
    assert gw.metrics_address != gw.address
    status, body = get(gw.metrics_address, "/metrics")
    assert status == 200
    assert "parley_gateway_connections_open" in body
    assert "process_resident_memory_bytes" in body
    assert get(gw.metrics_address, "/healthz")[0] == 200
    assert get(gw.address, "/") == (200, "<title>Parley</title>")
    assert get(gw.address, "/nope")[0] == 404
    assert get(gw.address, "/README.md")[0] == 404
    assert get(gw.address, "/page.test.mjs")[0] == 404


def _make_cert(directory, name):
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", f"/CN={name}",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    return cert, key


def _served_common_name(address):
    """The CN of the certificate the gateway presents to a new connection."""
    host, port = address.rsplit(":", 1)
    pem = ssl.get_server_certificate((host, int(port)))
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"],
                         input=pem, capture_output=True, text=True,
                         check=True).stdout
    return out.strip().rsplit("CN", 1)[1].lstrip(" =")


def test_a_renewed_tls_certificate_is_served_without_a_restart(
        tmp_path, procs, service):
    live = tmp_path / "live"
    live.mkdir()
    first = _make_cert(tmp_path, "first")
    second = _make_cert(tmp_path, "second")
    cert, key = live / "cert.pem", live / "key.pem"
    for src, dst in zip(first, (cert, key)):
        dst.write_bytes(src.read_bytes())
    gw = start_gateway(tmp_path, procs, service,
                       [f"--tls_cert={cert}", f"--tls_key={key}",
                        "--tls_reload_interval=100ms"])
    assert _served_common_name(gw.address) == "first"
    # A renewal as certbot and friends do it: new files moved into place.
    mark = len(gw.lines)
    for src, dst in zip(second, (cert, key)):
        tmp = dst.with_suffix(".new")
        tmp.write_bytes(src.read_bytes())
        os.replace(tmp, dst)
    gw.wait_for_event("gateway.tls_reloaded", start=mark)
    assert _served_common_name(gw.address) == "second"
    # A broken pair (the key of another certificate) is refused and logged;
    # the gateway keeps serving the last good one.
    mark = len(gw.lines)
    tmp = key.with_suffix(".new")
    tmp.write_bytes(first[1].read_bytes())
    os.replace(tmp, key)
    failed = gw.wait_for_event("gateway.tls_reload_failed", start=mark)
    assert "mismatch" in failed["reason"]
    assert _served_common_name(gw.address) == "second"


def test_tls_serves_wss(tmp_path, procs, service):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    gw = start_gateway(tmp_path, procs, service,
                       [f"--tls_cert={cert}", f"--tls_key={key}"])
    token = harness.mint_token(service.token_secret, "alice")
    context = ssl.create_default_context(cafile=str(cert))

    async def scenario():
        async with websockets.connect(f"wss://{gw.address}/?token={token}",
                                      ssl=context) as ws:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert welcome["welcome"]["userId"] == "alice"
            await ws.send(json.dumps({"ping": {"nonce": "tls"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10)) == {
                "pong": {"nonce": "tls"}}

    asyncio.run(scenario())
    # Plain HTTP on the TLS port gets no answer.
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://{gw.address}/healthz", timeout=2)
    # HTTPS works.
    with urllib.request.urlopen(f"https://{gw.address}/healthz", timeout=5,
                                context=context) as r:
        assert r.status == 200


def test_bad_tls_key_fails_at_start(tmp_path, procs, service):
    bad = tmp_path / "missing.pem"
    argv = [harness.bin_path("gateway/parley-gateway"),
            "--listen_address=127.0.0.1:0",
            f"--service_address={service.link_address}",
            f"--tls_cert={bad}", f"--tls_key={bad}"]
    gw = procs.add(harness.Proc("gateway-bad-tls", argv, str(tmp_path)))
    assert gw.proc.wait(10) != 0
    gw.wait_for_event("gateway.start_failed", timeout=5)
