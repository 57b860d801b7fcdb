"""The README's run command, end to end: tools/run.sh builds, starts the
service and gateway, seeds the demo, prints two URLs whose tokens chat, and
stops both processes on Ctrl-C."""

import asyncio
import json
import os
import re
import signal
import subprocess
import threading

import harness


async def _chat(url_alice, url_bob):
    import websockets  # Debian's python3-websockets.
    ws_alice = url_alice.replace("http://", "ws://")
    ws_bob = url_bob.replace("http://", "ws://")
    async with websockets.connect(ws_alice) as a, websockets.connect(ws_bob) as b:
        for ws in (a, b):
            assert "welcome" in json.loads(await asyncio.wait_for(ws.recv(), 10))
        await a.send(json.dumps({"send": {"clientMsgId": "demo-1",
                                          "to": {"user": "bob"},
                                          "text": "hello from the demo"}}))
        while True:
            frame = json.loads(await asyncio.wait_for(b.recv(), 10))
            if "message" in frame:
                return frame["message"]


def test_run_command_starts_a_working_demo_and_stops_on_ctrl_c(tmp_path):
    ports = {name: harness.free_port() for name in
             ("LISTEN", "LINK", "ADMIN", "METRICS")}
    env = dict(os.environ, PARLEY_STATE_DIR=str(tmp_path / "state"),
               **{f"PARLEY_{k}_ADDRESS": f"127.0.0.1:{v}"
                  for k, v in ports.items()})
    proc = subprocess.Popen([os.path.join(harness.REPO, "tools", "run.sh")],
                            env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines = []
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(600), "".join(lines)
        out = "".join(lines)
        urls = dict(re.findall(r"^\s+(alice|bob):\s+(http://\S+)$", out, re.M))
        assert set(urls) == {"alice", "bob"}, out
        assert f"127.0.0.1:{ports['LISTEN']}" in urls["alice"]
        message = asyncio.run(_chat(urls["alice"], urls["bob"]))
        assert message["from"] == "alice"
        assert message["text"] == "hello from the demo"
        assert message["conversation"] == "d:alice:bob"
    finally:
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(60)
        reader.join(10)
    out = "".join(lines)
    assert "parley: stopped" in out, out
    assert "a process exited" not in out, out
    assert code in (0, 130), out
    for log in ("service.log", "gateway.log"):
        text = (tmp_path / "state" / log).read_text()
        assert "event=service.stopped" in text or "event=gateway.stopped" in text
