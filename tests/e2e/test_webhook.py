"""End to end: the offline-notification webhook against real HTTP servers
(Python's http.server on loopback): signed notices for recipients with no
live session, retries while the receiver is down, and a slow receiver that
never delays delivery. See proto/parley/v1/webhook.proto."""

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
import time
import urllib.request

import harness
from wsclient import Client

SECRET = "hook-secret"


class Receiver:
    """An HTTP server that records POSTs and answers from a script of
    statuses (then 200); `delay` seconds before each answer."""

    def __init__(self, statuses=(), delay=0.0):
        self.posts = []
        self.statuses = list(statuses)
        self.delay = delay
        self.cond = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.cond:
                    receiver.posts.append((dict(self.headers), body))
                    status = (receiver.statuses.pop(0) if receiver.statuses
                              else 200)
                    receiver.cond.notify_all()
                time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def wait_posts(self, n, timeout=20):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.posts) >= n, timeout), \
                self.posts
            return list(self.posts)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def start(tmp_path, procs, url, *extra):
    service = procs.add(harness.start_service(
        str(tmp_path), extra=[f"--webhook_url={url}",
                              f"--webhook_secret={SECRET}", *extra]))
    gateway = procs.add(harness.start_gateway(str(tmp_path), service))
    admin = harness.AdminClient(service)
    for user in ("alice", "bob", "carol"):
        admin.call("CreateUser", id=user)
    admin.close()
    return service, gateway


def metric(service, name):
    """The service's /metrics lines of the series `name`."""
    text = urllib.request.urlopen(
        f"http://{service.metrics_address}/metrics", timeout=10).read()
    return [line for line in text.decode().splitlines()
            if line.split("{")[0].split(" ")[0] == name]


def counter(service, result):
    for line in metric(service, "parley_service_webhook_notices_total"):
        if f'result="{result}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def client(service, gateway, user):
    return Client(gateway.address,
                  harness.mint_token(service.token_secret, user), name=user)


def test_offline_recipients_get_a_signed_notice(tmp_path, procs):
    receiver = Receiver()
    try:
        service, gateway = start(tmp_path, procs, receiver.url)

        async def scenario():
            a = await client(service, gateway, "alice").connect()
            c = await client(service, gateway, "carol").connect()
            await a.send_text("a-1", "bob", "are you there, bob?")
            await a.send_text("a-2", "carol", "hi carol")
            await c.wait_for(lambda: c.applied, what="carol's message")
            await a.wait_for(lambda: len(a.acks) == 2, what="the acks")
            await a.close()
            await c.close()
        run(scenario())

        headers, body = receiver.wait_posts(1)[0]
        stamp = headers["X-Parley-Timestamp"]
        expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body,
                            hashlib.sha256).hexdigest()
        assert headers["X-Parley-Signature"] == f"v1={expected}"
        assert abs(int(stamp) - time.time()) < 60
        notice = json.loads(body)
        assert notice["recipient"] == "bob"
        assert notice["sender"] == "alice"
        assert notice["conversation"] == "d:alice:bob"
        assert notice["inbox_seq"] == "1"
        assert notice["preview"] == "are you there, bob?"
        assert notice["notice_id"] == f"{notice['message_id']}:bob"
        # carol was online: one notice in all.
        time.sleep(0.5)
        assert len(receiver.posts) == 1
        assert counter(service, "sent") == 1
    finally:
        receiver.close()


def test_a_receiver_that_is_down_gets_the_notice_when_it_is_back(
        tmp_path, procs):
    receiver = Receiver(statuses=[503, 503])
    try:
        service, gateway = start(tmp_path, procs, receiver.url,
                                 "--webhook_preview=false")

        async def send():
            a = await client(service, gateway, "alice").connect()
            await a.send_text("a-1", "bob", "secret plans")
            await a.wait_for(lambda: a.acks, what="the ack")
            await a.close()
        run(send())
        posts = receiver.wait_posts(3, timeout=30)
        assert [json.loads(b)["notice_id"] for _, b in posts[:3]] == [
            json.loads(posts[0][1])["notice_id"]] * 3
        assert "preview" not in json.loads(posts[2][1])
        deadline = time.monotonic() + 10
        while counter(service, "sent") != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counter(service, "sent") == 1
        assert any(l.endswith(" 2") for l in metric(
            service, "parley_service_webhook_retries_total"))
    finally:
        receiver.close()


def test_a_slow_receiver_never_delays_delivery(tmp_path, procs):
    receiver = Receiver(delay=3.0)
    try:
        service, gateway = start(tmp_path, procs, receiver.url,
                                 "--webhook_timeout=300ms",
                                 "--webhook_max_attempts=1")

        async def scenario():
            a = await client(service, gateway, "alice").connect()
            c = await client(service, gateway, "carol").connect()
            for i in range(5):
                await a.send_text(f"b-{i}", "bob", f"to offline bob {i}")
            start_time = time.monotonic()
            await a.send_text("c-1", "carol", "to online carol")
            await c.wait_for(lambda: c.applied, what="carol's message")
            elapsed = time.monotonic() - start_time
            await a.close()
            await c.close()
            return elapsed
        elapsed = run(scenario())
        # Five notices each wait 300 ms for a receiver that takes 3 s; had
        # the message to carol waited for the webhook it would take seconds.
        assert elapsed < 2.5, elapsed
        deadline = time.monotonic() + 15
        while counter(service, "failed") < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert counter(service, "failed") == 5
    finally:
        receiver.close()
