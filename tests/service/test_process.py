"""The parley-service process as operators and gateways see it: required
flags, the store URL, the readiness line, HTTP /metrics and /healthz, health
and keepalive on the link, and SIGTERM.

Run: /usr/bin/python3 -m pytest tests/service
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request

import grpc
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402
from link_client import LinkClient  # noqa: E402


def _get(address, path):
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _health(address):
    """grpc.health.v1.Health/Check with hand-encoded protobuf: the response
    HealthCheckResponse{status: SERVING} is b'\\x08\\x01'."""
    with grpc.insecure_channel(address) as channel:
        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        return check(b"", timeout=10)


def _run_with(tmp_path, bad_flag):
    """Runs parley-service with valid flags plus `bad_flag` (and no PARLEY_*
    environment) and returns how it exited, for flags it does not start
    with."""
    argv = [harness.bin_path("service/parley-service"),
            f"--data_dir={tmp_path}", "--link_address=127.0.0.1:0",
            "--admin_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
            "--token_secret=s", "--admin_key=k", bad_flag]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          env=env)


def _start_refused(tmp_path, bad_flag):
    """As _run_with; asserts the flags are refused as bad usage (exit 2) and
    returns stderr."""
    result = _run_with(tmp_path, bad_flag)
    assert result.returncode == 2
    return result.stderr


@pytest.mark.parametrize("missing", ["token_secret", "admin_key"])
def test_refuses_to_start_without_secrets(tmp_path, missing):
    stderr = _start_refused(tmp_path, f"--{missing}=")
    assert f"--{missing} is required" in stderr


@pytest.mark.parametrize("flag", ["sqlite_max_batch", "sqlite_checkpoint_pages"])
def test_refuses_to_start_with_a_zero_store_limit(tmp_path, flag):
    stderr = _start_refused(tmp_path, f"--{flag}=0")
    assert f"--{flag}" in stderr and "at least 1" in stderr


def test_sqlite_store_url_creates_and_serves_that_file(tmp_path, procs, pb):
    db = tmp_path / "elsewhere" / "x.db"
    svc = procs.add(harness.start_service(
        str(tmp_path), extra=[f"--store=sqlite://{db}"]))
    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    admin.call("CreateUser", id="bob")
    admin.call("SendMessage", **{"from": "alice", "text": "hi"},
               to=pb.client.Recipient(user="bob"))
    assert admin.call("GetStats").stored_messages == 1
    admin.close()
    assert not os.path.exists(os.path.join(svc.data_dir, "parley.db"))
    with sqlite3.connect(db) as stored:
        users = stored.execute("SELECT id FROM users ORDER BY id").fetchall()
    assert users == [("alice",), ("bob",)]
    # A restore given the same --store finds the running service's lock.
    restore = subprocess.run(
        [harness.bin_path("service/parley-service"), "restore",
         f"--from={tmp_path}/backup.db", f"--store=sqlite://{db}"],
        capture_output=True, text=True, timeout=30)
    assert restore.returncode == 1
    assert f'the data directory "{db.parent}" is in use' in restore.stderr


def test_unreachable_postgres_store_fails_at_start_naming_the_server(tmp_path):
    result = _run_with(tmp_path,
                       "--store=postgres://parley:pw-x7@127.0.0.1:1/parley")
    assert result.returncode == 1
    assert "service.start_failed" in result.stderr
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in result.stderr
    assert "pw-x7" not in result.stderr
    assert "service.ready" not in result.stderr


@pytest.mark.parametrize("url,said", [
    ("mysql://db/parley", 'store URL scheme "mysql" is not supported'),
    ("/var/lib/parley/parley.db", "has no scheme"),
    ("sqlite://db-host/parley.db", "names a host"),
])
def test_bad_store_url_is_refused_naming_the_accepted_forms(tmp_path, url,
                                                           said):
    stderr = _start_refused(tmp_path, f"--store={url}")
    assert stderr.startswith("parley-service: --store: ")
    assert said in stderr
    assert "sqlite:///absolute/path/parley.db" in stderr


def test_environment_overrides_flags(tmp_path, procs):
    argv = [harness.bin_path("service/parley-service"),
            "--link_address=127.0.0.1:0", "--admin_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0", f"--data_dir={tmp_path}/d"]
    env = {"PARLEY_TOKEN_SECRET": "from-env", "PARLEY_ADMIN_KEY": "key-env"}
    proc = procs.add(harness.Proc("service", argv, str(tmp_path), env=env))
    proc.wait_for_event("service.ready")
    assert os.path.exists(f"{tmp_path}/d/parley.db")


def test_metrics_healthz_and_grpc_health(tmp_path, procs, pb):
    svc = procs.add(harness.start_service(str(tmp_path)))
    status, body = _get(svc.metrics_address, "/healthz")
    assert status == 200
    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    admin.call("CreateUser", id="bob")
    admin.call("SendMessage", **{"from": "alice", "text": "hi"},
               to=pb.client.Recipient(user="bob"))
    status, body = _get(svc.metrics_address, "/metrics")
    assert status == 200
    assert "parley_service_sends_total 1" in body
    assert "parley_service_acks_total 1" in body
    assert "parley_service_store_commit_batch_size_count" in body
    for by in ("checkpointer", "writer"):
        assert f'parley_service_store_checkpoint_seconds_count{{by="{by}"}}' \
            in body
    assert "process_resident_memory_bytes" in body
    assert _get(svc.metrics_address, "/nope")[0] == 404
    assert _health(svc.link_address) == b"\x08\x01"
    assert _health(svc.admin_address) == b"\x08\x01"
    admin.close()


def test_fast_keepalive_pings_do_not_get_too_many_pings(tmp_path, procs, pb):
    """The gateway pings every 20 s; the service must never answer pings with
    GOAWAY too_many_pings. A client pinging every second on an idle stream
    would be cut off after two strikes with gRPC's default server policy."""
    svc = procs.add(harness.start_service(str(tmp_path)))
    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    options = [("grpc.keepalive_time_ms", 1000),
               ("grpc.keepalive_timeout_ms", 5000),
               ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.max_pings_without_data", 0)]
    link = LinkClient(pb, svc.link_address, channel_options=options)
    token = harness.mint_token(svc.token_secret, "alice")
    assert link.open("s1", token).HasField("accepted")
    time.sleep(6)  # Idle on purpose: pings are what is under test.
    link.frame("s1", ping=pb.client.Ping(nonce="still-here"))
    link.wait(lambda e: e.HasField("delivery") and
              e.delivery.frame.pong.nonce == "still-here")
    assert link.ended is None
    link.close()
    admin.close()


def test_sigterm_ends_link_streams_with_unavailable_and_exits_zero(
        tmp_path, procs, pb):
    svc = procs.add(harness.start_service(str(tmp_path)))
    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    admin.call("CreateUser", id="bob")
    link = LinkClient(pb, svc.link_address)
    token = harness.mint_token(svc.token_secret, "alice")
    assert link.open("s1", token).HasField("accepted")
    for i in range(20):
        link.send("s1", f"c{i}", "bye", user="bob")
    link.wait_ack("s1", "c0")
    started = time.monotonic()
    svc.send_signal(signal.SIGTERM)
    svc.wait_for_event("service.draining")
    assert svc.proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 12  # --shutdown_timeout is 10 s.
    ended = link.wait_ended()
    assert isinstance(ended, grpc.RpcError)
    assert ended.code() == grpc.StatusCode.UNAVAILABLE
    # Every send the service took before the drain was acked first.
    acked = {f.ack.client_msg_id for f in link.frames_for("s1", "ack")}
    svc2 = procs.add(harness.start_service(str(tmp_path), name="service-2",
                                           data_dir=svc.data_dir))
    admin2 = harness.AdminClient(svc2)
    stored = admin2.call("GetStats").stored_messages
    assert stored == len(acked)
    admin.close()
    admin2.close()
    link.close()
