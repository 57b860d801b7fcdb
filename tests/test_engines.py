"""Checks of the engine fixtures themselves: a real PostgreSQL and a real
nats-server start on free ports, survive a restart on the same port and
data, and leave nothing running."""

import os
import socket

import engines


def _publish_and_receive(url, subject, payload):
    host, port = url.removeprefix("nats://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        f = s.makefile("rwb")
        assert f.readline().startswith(b"INFO ")
        f.write(b'CONNECT {"verbose":false}\r\n')
        f.write(f"SUB {subject} 1\r\nPUB {subject} {len(payload)}\r\n".encode()
                + payload + b"\r\nPING\r\n")
        f.flush()
        lines = [f.readline() for _ in range(3)]
        return lines


def test_postgres_starts_keeps_data_across_a_restart_and_is_removed(procs):
    pg = engines.start_postgres(procs)
    pg.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
    pid = pg.proc.pid
    pg.restart()
    assert pg.proc.pid != pid
    assert pg.psql("SELECT x FROM t") == "42"
    assert pg.psql("SHOW fsync") == "on"
    root = pg.root
    procs.stop_all()
    assert not os.path.exists(root)


def test_nats_server_delivers_and_restarts_on_the_same_port(procs):
    nats = engines.start_nats(procs)
    lines = _publish_and_receive(nats.url, "parley.test", b"hello")
    assert lines[0].startswith(b"MSG parley.test 1 5")
    assert lines[1] == b"hello\r\n"
    port = nats.port
    nats.restart()
    assert nats.port == port
    assert _publish_and_receive(nats.url, "x", b"y")[1] == b"y\r\n"
