"""The README's run command, end to end: tools/run.sh builds, starts the
service and gateway, seeds the demo, prints two URLs whose tokens chat,
starts the service again when it is killed while the browsers stay
connected, stops both processes on Ctrl-C, and runs again on the same state
without an error and with its logs kept."""

import asyncio
import json
import os
import re
import signal
import subprocess
import threading

import harness


def _default_sigint():
    """Ctrl-C as in a terminal: a suite started in the background (nohup,
    `cmd &` in a script) inherits SIGINT ignored, which no shell can trap."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class RunCommand:
    """tools/run.sh in its own process group, its output read line by line."""

    def __init__(self, env):
        self.proc = subprocess.Popen(
            [os.path.join(harness.REPO, "tools", "run.sh")], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True, preexec_fn=_default_sigint)
        self.lines = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def out(self):
        with self._cond:
            return "".join(self.lines)

    def wait_for(self, text, timeout):
        with self._cond:
            assert self._cond.wait_for(
                lambda: text in "".join(self.lines) or
                not self._reader.is_alive(), timeout), self.out
            assert text in "".join(self.lines), self.out

    def urls(self):
        return dict(re.findall(r"^\s+(alice|bob):\s+(http://\S+)$", self.out,
                               re.M))

    def interrupt(self):
        """Ctrl-C in a terminal signals the whole foreground process group."""
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(60)
        self._reader.join(10)
        return code


def _ws(url):
    return url.replace("http://", "ws://")


async def _next(ws, kind):
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if kind in frame:
            return frame[kind]


async def _send(ws, cid, text):
    await ws.send(json.dumps({"send": {"clientMsgId": cid,
                                       "to": {"user": "bob"}, "text": text}}))


async def _chat_across_a_service_kill(run, state):
    import websockets  # Debian's python3-websockets.
    urls = run.urls()
    async with websockets.connect(_ws(urls["alice"])) as a, \
            websockets.connect(_ws(urls["bob"])) as b:
        for ws in (a, b):
            await _next(ws, "welcome")
        await _send(a, "demo-1", "hello from the demo")
        first = await _next(b, "message")

        with open(os.path.join(state, "service.pid")) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(run.wait_for, "starting it again", 30)
        # The same sockets: the gateway kept them while the service was away.
        await _send(a, "demo-2", "after the restart")
        second = await _next(b, "message")
        assert a.close_code is None and b.close_code is None
        return first, second, pid


def test_run_command_demo_survives_a_service_kill_and_runs_again(tmp_path):
    ports = {name: harness.free_port() for name in
             ("LISTEN", "LINK", "ADMIN", "METRICS")}
    state = str(tmp_path / "state")
    # The test suite's own build (fastbuild) rather than a second, optimized
    # one; the default is opt.
    env = dict(os.environ, PARLEY_STATE_DIR=state,
               PARLEY_BUILD_MODE="fastbuild",
               **{f"PARLEY_{k}_ADDRESS": f"127.0.0.1:{v}"
                  for k, v in ports.items()})

    run = RunCommand(env)
    try:
        run.wait_for("Press Ctrl-C", 600)
        assert f"127.0.0.1:{ports['LISTEN']}" in run.urls()["alice"]
        assert 'group "team"' in run.out
        first, second, old_pid = asyncio.run(
            _chat_across_a_service_kill(run, state))
        assert (first["from"], first["text"], first["conversation"]) == (
            "alice", "hello from the demo", "d:alice:bob")
        assert second["text"] == "after the restart"
        assert int(second["inboxSeq"]) == int(first["inboxSeq"]) + 1
        with open(os.path.join(state, "service.pid")) as f:
            assert int(f.read()) != old_pid
    finally:
        code = run.interrupt()
    assert "parley: stopped" in run.out, run.out
    assert "a process exited" not in run.out, run.out
    assert code in (0, 130), run.out

    again = RunCommand(env)
    try:
        again.wait_for("Press Ctrl-C", 300)
    finally:
        code = again.interrupt()
    assert code in (0, 130), again.out
    assert "ALREADY_EXISTS" not in again.out
    assert "already exists" not in again.out.lower()
    assert set(again.urls()) == {"alice", "bob"}, again.out
    for log in ("service.log", "gateway.log"):
        text = (tmp_path / "state" / log).read_text()
        assert text.count("tools/run.sh started") == 2, log
        assert "event=service.stopped" in text or "event=gateway.stopped" in text
    # Three service starts: the first, the one after SIGKILL, the re-run.
    service_log = (tmp_path / "state" / "service.log").read_text()
    assert service_log.count("event=service.ready") == 3


def test_run_command_builds_optimized_binaries_unless_asked_otherwise(
        tmp_path):
    """The default is -c opt, as the images are built; a bad mode is refused.
    (Stopped as soon as the build starts: the suite's own build is
    fastbuild.)"""
    env = dict(os.environ, PARLEY_STATE_DIR=str(tmp_path / "state"))
    env.pop("PARLEY_BUILD_MODE", None)
    run = RunCommand(env)
    code = None
    try:
        run.wait_for("parley: building (-c opt", 120)
    finally:
        code = run.interrupt()
    # A Ctrl-C during the build ends run.sh, even when Bazel completes the
    # build instead of cancelling it: nothing is started.
    assert code != 0, run.out
    assert "Parley is running" not in run.out, run.out
    bad = subprocess.run([os.path.join(harness.REPO, "tools", "run.sh")],
                         env=dict(env, PARLEY_BUILD_MODE="fast"),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "PARLEY_BUILD_MODE must be opt, fastbuild or dbg" in bad.stderr
