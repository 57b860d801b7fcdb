"""Cross-process test harness: real Parley binaries on loopback.

Used by the pytest suites under tests/. Everything here is hermetic: ports are
0 (the binaries report what they bound in their `*.ready` log line) or found
free at run time, data lives in pytest's tmp_path, and every process started
is stopped by PID when its test ends.

    svc = start_service(tmp_path)
    gw = start_gateway(tmp_path, svc)      # waits for its upstream link
    admin = AdminClient(svc)
    admin.call("CreateUser", id="alice")
    token = mint_token(svc.token_secret, "alice")

Generated Python protos (protoc + grpc_python_plugin from Debian) are built
once per session into a temporary directory; import them with `protos()`.
"""

import base64
import hashlib
import hmac
import importlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TIMEOUT = 30.0


def bin_path(rel):
    """Path of a built binary, e.g. bin_path('service/parley-service')."""
    base = os.environ.get("PARLEY_BIN_DIR", os.path.join(REPO, "bazel-bin"))
    path = os.path.join(base, rel)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(
            f"{path} is not built; run `bazel build //...` (or set PARLEY_BIN_DIR)")
    return path


def free_port():
    """A TCP port that was free a moment ago (prefer port 0 where possible)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_log_line(line):
    """Splits `TS level=info event=x k=v k2="a b"` into (event, {k: v})."""
    fields = {}
    try:
        parts = shlex.split(line)
    except ValueError:
        return None, {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep:
            fields[key] = value
    return fields.get("event"), fields


class Proc:
    """A child process whose stderr (Parley's log) is read line by line."""

    def __init__(self, name, argv, log_dir, env=None, preexec_fn=None,
                 cwd=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.lines = []
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._log = open(self.log_path, "a", encoding="utf-8")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.PIPE, env=full_env, text=True, bufsize=1,
            preexec_fn=preexec_fn, cwd=cwd)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            self._log.write(line)
            self._log.flush()
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for_event(self, event, timeout=DEFAULT_TIMEOUT, start=0, **match):
        """Waits for a log line with this event (and field values); returns
        its fields. Fails if the process exits or the time runs out."""
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                while seen < len(self.lines):
                    ev, fields = parse_log_line(self.lines[seen])
                    seen += 1
                    if ev == event and all(fields.get(k) == str(v)
                                           for k, v in match.items()):
                        return fields
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.name} exited ({self.proc.returncode}) before "
                        f"logging {event}; log: {self.log_path}\n" + self.tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{self.name} did not log {event} within {timeout}s; "
                        f"log: {self.log_path}\n" + self.tail())
                self._cond.wait(min(left, 0.5))

    def wait_for_line(self, timeout=DEFAULT_TIMEOUT):
        """Waits until the process writes another line (or exits)."""
        with self._cond:
            seen = len(self.lines)
            self._cond.wait_for(
                lambda: len(self.lines) > seen or not self._reader.is_alive(),
                timeout)

    def tail(self, n=30):
        with self._cond:
            return "\n".join(self.lines[-n:])

    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=DEFAULT_TIMEOUT):
        """Signals the process and waits; SIGKILLs it if it does not exit."""
        self.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._reader.join(5)
        self._log.close()
        return self.proc.returncode

    def kill(self):
        return self.stop(signal.SIGKILL)


class ProcGroup:
    """Stops every process it started, newest first (used by fixtures)."""

    def __init__(self):
        self.procs = []
        self.cleanups = []

    def add(self, proc):
        self.procs.append(proc)
        return proc

    def on_stop(self, cleanup):
        """Runs `cleanup()` after every process is stopped."""
        self.cleanups.append(cleanup)

    def stop_all(self):
        for p in reversed(self.procs):
            if p.proc.poll() is None:
                p.stop()
        for cleanup in reversed(self.cleanups):
            cleanup()


def start_service(log_dir, data_dir=None, extra=(), name="service",
                  token_secret="test-token-secret", admin_key="test-admin-key",
                  link_address="127.0.0.1:0"):
    """Starts parley-service on ports 0 and waits for service.ready."""
    data_dir = data_dir or os.path.join(log_dir, "data")
    os.makedirs(data_dir, exist_ok=True)
    argv = [bin_path("service/parley-service"),
            f"--link_address={link_address}",
            "--admin_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
            f"--data_dir={data_dir}",
            f"--token_secret={token_secret}",
            f"--admin_key={admin_key}", *extra]
    proc = Proc(name, argv, log_dir)
    ready = proc.wait_for_event("service.ready")
    proc.link_address = ready["link_address"]
    proc.admin_address = ready["admin_address"]
    proc.metrics_address = ready["metrics_address"]
    proc.data_dir = data_dir
    proc.token_secret = token_secret
    proc.admin_key = admin_key
    return proc


def start_gateway(log_dir, service, extra=(), name="gateway",
                  wait_upstream=True):
    """Starts parley-gateway on port 0 against `service` (a started service
    or a link address) and waits for gateway.ready and, unless told not to,
    for its upstream link (gateway.upstream_up)."""
    link = getattr(service, "link_address", service)
    argv = [bin_path("gateway/parley-gateway"),
            "--listen_address=127.0.0.1:0",
            "--metrics_address=127.0.0.1:0",
            f"--service_address={link}", *extra]
    proc = Proc(name, argv, log_dir)
    ready = proc.wait_for_event("gateway.ready")
    proc.address = ready["address"]
    proc.metrics_address = ready["metrics_address"]
    if wait_upstream:
        proc.wait_for_event("gateway.upstream_up")
    return proc


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_token(secret, user, ttl=3600, device="", now=None, kid=""):
    """An HS256 JWT written independently of Parley's C++ (as any backend
    holding the secret would mint one); `kid` names the key in the header."""
    now = int(now if now is not None else time.time())
    head = {"alg": "HS256", "typ": "JWT"}
    if kid:
        head["kid"] = kid
    header = _b64url(json.dumps(head).encode())
    claims = {"sub": user, "exp": now + ttl, "iat": now}
    if device:
        claims["dev"] = device
    body = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{body}".encode()
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{_b64url(sig)}"


_PROTO_DIR = None
_PROTO_LOCK = threading.Lock()


def protos():
    """Generates parley/v1/*_pb2(_grpc).py once; returns a namespace with
    client, gateway_link, admin and token modules (and their _grpc)."""
    global _PROTO_DIR
    with _PROTO_LOCK:
        if _PROTO_DIR is None:
            out = tempfile.mkdtemp(prefix="parley-py-protos-")
            src = os.path.join(REPO, "proto")
            files = [os.path.join("parley", "v1", f) for f in
                     sorted(os.listdir(os.path.join(src, "parley", "v1")))
                     if f.endswith(".proto")]
            subprocess.run(
                ["protoc", f"-I{src}", f"--python_out={out}",
                 f"--grpc_out={out}",
                 "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                 *files], check=True, cwd=src)
            for d in ("parley", os.path.join("parley", "v1")):
                open(os.path.join(out, d, "__init__.py"), "a").close()
            sys.path.insert(0, out)
            _PROTO_DIR = out

    class Namespace:
        pass

    ns = Namespace()
    for mod in ("client", "gateway_link", "admin", "token"):
        setattr(ns, mod, importlib.import_module(f"parley.v1.{mod}_pb2"))
    for mod in ("gateway_link", "admin"):
        setattr(ns, mod + "_grpc",
                importlib.import_module(f"parley.v1.{mod}_pb2_grpc"))
    return ns


class AdminClient:
    """parley.v1.Admin over a real gRPC channel, with the admin key."""

    def __init__(self, service, admin_key=None):
        import grpc  # Debian's python3-grpcio.
        self._grpc = grpc
        self.pb = protos()
        self.channel = grpc.insecure_channel(service.admin_address)
        self.stub = self.pb.admin_grpc.AdminStub(self.channel)
        key = admin_key if admin_key is not None else service.admin_key
        self.metadata = [("authorization", f"Bearer {key}")]

    def call(self, method, request=None, timeout=10, **fields):
        """call('CreateUser', id='alice') builds the request from fields."""
        if request is None:
            request_type = self.pb.admin.DESCRIPTOR.services_by_name[
                "Admin"].methods_by_name[method].input_type
            cls = getattr(self.pb.admin, request_type.name)
            request = cls(**fields)
        return getattr(self.stub, method)(request, metadata=self.metadata,
                                          timeout=timeout)

    def close(self):
        self.channel.close()
