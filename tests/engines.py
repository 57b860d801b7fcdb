"""The distributed engines a Parley cluster runs on, started for one test.

PostgreSQL 15 (Debian's postgresql-15) and nats-server (Debian's
nats-server), each on a free loopback port with its data in a fresh
temporary directory, stopped by PID when the test ends. No mocks.

PostgreSQL refuses to run as root, so when the tests run as root (CI does)
initdb and postgres run as the unprivileged user `nobody`; their directory is
made under /tmp (pytest's tmp_path may sit under a home directory `nobody`
cannot enter).

    pg = start_postgres(procs)             # procs: harness.ProcGroup
    pg.url                                 # postgres://parley@127.0.0.1:P/parley
    pg.restart()                           # same data, same port
    nats = start_nats(procs)
    nats.url                               # nats://127.0.0.1:P
"""

import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

from harness import DEFAULT_TIMEOUT, Proc

PG_BIN = "/usr/lib/postgresql/15/bin"
NATS_SERVER = "/usr/sbin/nats-server"


def _require(path, package):
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"{path} is missing: install Debian's {package} "
            "(tools/deps.sh test does)")


def _as_unprivileged():
    """(preexec_fn, uid, gid) that drop root to `nobody`; no-ops otherwise."""
    if os.geteuid() != 0:
        return None, os.getuid(), os.getgid()
    nobody = pwd.getpwnam("nobody")

    def drop():
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)

    return drop, nobody.pw_uid, nobody.pw_gid


class Postgres:
    """A PostgreSQL server of one test; `url` names its database `parley`."""

    def __init__(self, procs, log_dir, port):
        self.procs = procs
        self.log_dir = log_dir
        self.port = port
        self.root = tempfile.mkdtemp(prefix="parley-pg-")
        self.data = os.path.join(self.root, "data")
        self.user = "parley"
        self.url = f"postgres://{self.user}@127.0.0.1:{port}/parley"
        self.proc = None
        self._drop, uid, gid = _as_unprivileged()
        os.chown(self.root, uid, gid)
        os.chmod(self.root, 0o700)
        subprocess.run(
            [os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", self.user,
             "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=self._drop, cwd=self.root)

    def start(self, timeout=DEFAULT_TIMEOUT):
        argv = [os.path.join(PG_BIN, "postgres"), "-D", self.data,
                "-p", str(self.port), "-k", self.root,
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=on",
                "-c", "synchronous_commit=on", "-c", "max_connections=200"]
        self.proc = self.procs.add(
            Proc("postgres", argv, self.log_dir, preexec_fn=self._drop,
                 cwd=self.root))
        deadline = time.monotonic() + timeout
        while True:
            ready = subprocess.run(
                [os.path.join(PG_BIN, "pg_isready"), "-h", "127.0.0.1",
                 "-p", str(self.port), "-U", self.user, "-d", "postgres"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if ready.returncode == 0:
                break
            if self.proc.proc.poll() is not None:
                raise RuntimeError("postgres exited at start:\n" +
                                   self.proc.tail())
            if time.monotonic() > deadline:
                raise TimeoutError("postgres not ready:\n" + self.proc.tail())
            # pg_isready has no way to wait for a server that is starting.
            time.sleep(0.05)
        return self

    def psql(self, sql, db="parley"):
        """Runs SQL with psql; returns its unaligned, tuples-only output."""
        out = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
             "-d", db, "-v", "ON_ERROR_STOP=1", "-A", "-t", "-c", sql],
            check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def create_database(self, name="parley"):
        self.psql(f'CREATE DATABASE "{name}"', db="postgres")

    def stop(self, sig=signal.SIGINT):
        """SIGINT: PostgreSQL's fast shutdown; SIGKILL: a crash."""
        if self.proc is not None:
            self.proc.stop(sig)
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(procs, log_dir=None):
    """Initialises, starts and creates database `parley`; removed at the end
    of the test when `procs` stops (see conftest's `engines` fixture)."""
    _require(os.path.join(PG_BIN, "postgres"), "postgresql-15")
    from harness import free_port
    log_dir = log_dir or tempfile.mkdtemp(prefix="parley-pg-log-")
    pg = Postgres(procs, log_dir, free_port())
    procs.on_stop(pg.cleanup)
    pg.start()
    pg.create_database()
    return pg


class Nats:
    """A nats-server of one test."""

    def __init__(self, procs, log_dir):
        self.procs = procs
        self.log_dir = log_dir
        self.port = None
        self.proc = None

    def start(self, timeout=DEFAULT_TIMEOUT):
        # Port -1: the server picks a free one and logs it; a restart asks for
        # the same one again so that clients reconnect to it.
        port = self.port if self.port else -1
        argv = [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port)]
        self.proc = self.procs.add(Proc("nats", argv, self.log_dir))
        deadline = time.monotonic() + timeout
        pattern = re.compile(r"Listening for client connections on "
                             r"127\.0\.0\.1:(\d+)")
        while True:
            m = next((pattern.search(l) for l in self.proc.lines
                      if pattern.search(l)), None)
            if m and any("Server is ready" in l for l in self.proc.lines):
                self.port = int(m.group(1))
                break
            if self.proc.proc.poll() is not None:
                raise RuntimeError("nats-server exited:\n" + self.proc.tail())
            if time.monotonic() > deadline:
                raise TimeoutError("nats-server not ready:\n" +
                                   self.proc.tail())
            self.proc.wait_for_line(timeout=max(0.1, deadline - time.monotonic()))
        self.url = f"nats://127.0.0.1:{self.port}"
        return self

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None:
            self.proc.stop(sig)
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()


def start_nats(procs, log_dir=None):
    _require(NATS_SERVER, "nats-server")
    log_dir = log_dir or tempfile.mkdtemp(prefix="parley-nats-log-")
    return Nats(procs, log_dir).start()
