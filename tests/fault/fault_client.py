"""The checker's Parley client: one logical device that keeps reconnecting.

Written from proto/parley/v1/client.proto and docs/protocol.md only (Debian's
python3-websockets and protobuf), independently of the gateway's code. A
Device is one device of a user: it may use several WebSocket connections over
its life (each one is a "session" in the checker's reports), and it follows
the protocol as a careful client would:

  * first connect: no inboxSeq (a new device); last = Welcome.inbox_seq;
  * every reconnect: inboxSeq = last (0 included), by ?inboxSeq= or in hello,
    with the store generation of the first welcome when it named one (no
    restore happens in a checker run, so the generation must never change);
  * the inbox rule: a message or Ack at last + 1 is applied, one at or below
    last is a duplicate, one above last + 1 is held while the client syncs
    from last (paging while `more`);
  * a welcome whose head is above last starts a "barrier" sync
    {afterSeq: last, limit: head - last}: the service answers it after the
    replay that precedes it on the link, so whatever the page holds that the
    replay did not deliver was missed by the replay;
  * sends stay pending until their Ack and are resent with the same
    clientMsgId after reconnecting, once the connection is ready (its replay
    is complete: welcome head == last, or the barrier page arrived); a
    replayed message from itself for a pending send settles that send, since
    it is stored and was made on an earlier connection;
  * retryable errors are retried after a short pause; closes other than our
    own are followed by a reconnect with jittered exponential backoff.

While it runs, a device records every frame (Recorder) and the violations it
can see on the wire; the rules are listed in fault_run.py's docstring.
"""

import asyncio
import dataclasses
import json
import time

import websockets
from google.protobuf import json_format

RETRYABLE_ERRORS = frozenset({"ERROR_CODE_RATE_LIMITED",
                              "ERROR_CODE_UNAVAILABLE",
                              "ERROR_CODE_BACKPRESSURE"})
# Close codes a fault may cause: 1006 (no close frame: a killed gateway or
# our own abort), 1001 (draining), 1013 (service unreachable), 4008 (the auth
# deadline passed while the service was stopped). Any other is a violation.
EXPECTED_CLOSES = frozenset({1001, 1006, 1013, 4008})
# With several service replicas a gateway moves a session whose replica died
# to another one: "service unreachable" (1013) is then a violation too.
REPLICATED_CLOSES = EXPECTED_CLOSES - {1013}
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 2.0


@dataclasses.dataclass
class Violation:
    """A broken rule: what, where (device, connection number), when."""
    kind: str
    device: str
    conn: int
    t: float
    detail: str
    frame: object = None


class Recorder:
    """Every frame and event of a run, stamped with the client clock (seconds
    since the run started), and the violations found."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.events = []
        self.violations = []

    def now(self):
        return round(time.monotonic() - self.t0, 4)

    def log(self, device, conn, what, frame=None):
        """`what`: ">" sent, "<" received, or an event name."""
        self.events.append((self.now(), device, conn, what, frame))

    def violate(self, kind, device, conn, detail, frame=None):
        self.violations.append(
            Violation(kind, device, conn, self.now(), detail, frame))

    def dump(self, path):
        """Writes every event as one JSON line."""
        with open(path, "w", encoding="utf-8") as out:
            for t, device, conn, what, frame in self.events:
                out.write(json.dumps({"t": t, "device": device, "conn": conn,
                                      "what": what, "frame": frame}) + "\n")


class Changes:
    """Wakes waiters whenever a client's state may have changed."""

    def __init__(self):
        self._event = asyncio.Event()

    def notify(self):
        self._event.set()

    async def until(self, predicate, timeout):
        """Waits until predicate() holds; False if `timeout` s pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._event.clear()
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                pass
        return True


class TaskSet:
    """The run's background tasks: cancelled together at the end; one that
    died of an exception is kept so that the run fails loudly rather than
    with a device that silently stopped."""

    def __init__(self):
        self._tasks = set()
        self.crashes = []

    def spawn(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task):
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.crashes.append(task.exception())

    async def cancel_all(self):
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Codec:
    """A subprotocol: parley.v1.json (text) or parley.v1.proto (binary).
    Frames are dicts in protobuf's canonical JSON mapping either way."""

    def __init__(self, subprotocol, client_pb):
        self.subprotocol = subprotocol
        self._pb = client_pb

    def encode(self, frame):
        if self.subprotocol == "parley.v1.json":
            return json.dumps(frame)
        return json_format.ParseDict(
            frame, self._pb.ClientFrame()).SerializeToString()

    def decode(self, raw):
        if self.subprotocol == "parley.v1.json":
            return json.loads(raw)
        return json_format.MessageToDict(self._pb.ServerFrame.FromString(raw))


@dataclasses.dataclass
class Applied:
    """How one inbox_seq reached the device."""
    message_id: str
    source: str  # "live", "ack" or "sync"
    conn: int
    frame: dict


class Inbox:
    """The inbox rule's state: `last`, what was applied, what is held."""

    def __init__(self):
        self.last = None  # None until the first welcome.
        self.applied = {}  # inbox_seq -> Applied
        self.held = {}  # inbox_seq -> Applied, beyond a gap

    def offer(self, seq, entry):
        """Applies or holds `entry` at `seq`; returns "applied", "duplicate"
        or "held"."""
        if seq <= self.last:
            return "duplicate"
        if seq > self.last + 1:
            self.held.setdefault(seq, entry)
            return "held"
        self.applied[seq] = entry
        self.last = seq
        while self.last + 1 in self.held:
            self.last += 1
            self.applied[self.last] = self.held.pop(self.last)
        for stale in [s for s in self.held if s <= self.last]:
            del self.held[stale]
        return "applied"


@dataclasses.dataclass
class Connection:
    """One WebSocket connection of a device (a session)."""
    no: int
    gateway: str
    hello_seq: object  # None: connected as a new device.
    welcome_head: object = None
    ready: bool = False
    sent: set = dataclasses.field(default_factory=set)  # clientMsgIds
    acked: set = dataclasses.field(default_factory=set)
    max_live: int = 0  # Highest live message inbox_seq on this connection.
    reported: set = dataclasses.field(default_factory=set)  # gap seqs
    close: object = None  # (code, reason) once closed


@dataclasses.dataclass
class SendRecord:
    """One message a device (or the admin bot) asked to send."""
    sender: str
    cid: str
    to: dict
    text: str
    acks: list = dataclasses.field(default_factory=list)
    settled_by: str = ""  # "ack", or how else it was known stored
    failed: object = None  # A non-retryable error frame.


@dataclasses.dataclass
class SyncState:
    """The one sync in flight: why, on which connection."""
    reason: str  # "gap", "barrier" or "final"
    conn: Connection
    page: list = dataclasses.field(default_factory=list)  # for "final"
    done: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)


class Device:
    """One device of a user, sending at random and applying what it gets.

    Owned by the checker's event loop; nothing here is thread-safe."""

    def __init__(self, name, user, *, codec, auth, token, rate, targets,
                 rng, gateways, recorder, changes, tasks, max_replay,
                 expected_closes=EXPECTED_CLOSES):
        self.name = name
        self.user = user
        self.codec = codec
        self.auth = auth  # "query" or "hello"
        self.token = token
        self.rate = rate  # sends per second
        self.targets = targets  # Recipient dicts this device sends to
        self.rng = rng
        self.gateways = gateways  # () -> list of gateway addresses
        self.rec = recorder
        self.changes = changes
        self.tasks = tasks  # TaskSet for retries
        self.max_replay = max_replay
        self.expected_closes = expected_closes
        self.inbox = Inbox()
        self.start_seq = None  # The head of the first welcome.
        self.generation = ""  # Welcome.store_generation ("" before one).
        self.sends = {}  # cid -> SendRecord
        self.pending = {}  # cid -> send frame, until settled
        self.conns = []
        self.conn = None
        self.sync = None
        self._ws = None
        self._sending = True
        self._running = True
        self._count = 0

    # ---------------------------------------------------------------- life

    async def run(self):
        """Connects, reads until closed, reconnects with backoff; until
        close()."""
        attempt = 0
        while self._running:
            conn = await self._connect()
            if conn is not None:
                await self._read(conn)
                if conn.welcome_head is not None:
                    attempt = 0
            if self._running:
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1

    async def produce(self):
        """Makes new sends at random moments while sending is on."""
        while self._sending:
            await asyncio.sleep(self.rng.expovariate(self.rate))
            if self._sending:
                await self._new_send()

    def stop_sending(self):
        self._sending = False

    def drop(self):
        """Aborts the socket without a closing handshake (a fault)."""
        if self._ws is not None:
            self.rec.log(self.name, self.conn.no if self.conn else 0, "drop")
            self._ws.transport.abort()

    async def close(self):
        """Closes normally (1000) and stops reconnecting."""
        self._running = False
        self._sending = False
        if self._ws is not None:
            await self._ws.close()

    def settled(self, head):
        """Ready, nothing pending or held, and applied up to `head`."""
        return (self.conn is not None and self.conn.ready and
                self.conn.close is None and not self.pending and
                self.sync is None and not self.inbox.held and
                self.inbox.last is not None and self.inbox.last >= head)

    async def final_sync(self, timeout):
        """Sends a last sync{afterSeq: last, limit: 1} and waits for its page:
        everything the service queued for this connection before it has then
        arrived. Returns the page's messages (nothing is applied from it)."""
        conn = self.conn
        await self._start_sync(conn, "final")
        await asyncio.wait_for(self.sync.done.wait(), timeout)
        page, self.sync = self.sync.page, None
        return page

    def _backoff(self, attempt):
        base = min(BACKOFF_MAX, BACKOFF_INITIAL * (2 ** attempt))
        return base * self.rng.uniform(0.5, 1.5)

    # ---------------------------------------------------------- connecting

    def _uri(self, address, hello_seq):
        if self.auth == "hello":
            return f"ws://{address}/"
        uri = f"ws://{address}/?token={self.token}&device={self.name}"
        if hello_seq is not None:
            uri += f"&inboxSeq={hello_seq}"
        if self.generation:
            uri += f"&storeGeneration={self.generation}"
        return uri

    async def _connect(self):
        addresses = self.gateways()
        if not addresses:
            return None
        address = self.rng.choice(addresses)
        hello_seq = self.inbox.last
        try:
            ws = await websockets.connect(
                self._uri(address, hello_seq),
                subprotocols=[self.codec.subprotocol], ping_interval=None,
                open_timeout=5, close_timeout=2, max_size=1 << 22)
        except (OSError, asyncio.TimeoutError,
                websockets.WebSocketException) as e:
            self.rec.log(self.name, 0, "connect_failed",
                         {"gateway": address, "error": repr(e)})
            return None
        conn = Connection(no=len(self.conns) + 1, gateway=address,
                          hello_seq=hello_seq)
        self.conns.append(conn)
        self.conn, self._ws, self.sync = conn, ws, None
        self.inbox.held.clear()
        self.rec.log(self.name, conn.no, "connected",
                     {"gateway": address, "helloSeq": hello_seq,
                      "subprotocol": ws.subprotocol, "auth": self.auth})
        if self.auth == "hello":
            hello = {"token": self.token, "device": self.name}
            if hello_seq is not None:
                hello["inboxSeq"] = str(hello_seq)
            if self.generation:
                hello["storeGeneration"] = self.generation
            await self._transmit(conn, {"hello": hello})
        return conn

    async def _read(self, conn):
        ws = self._ws
        try:
            async for raw in ws:
                frame = self.codec.decode(raw)
                self.rec.log(self.name, conn.no, "<", frame)
                await self.receive(conn, frame)
                self.changes.notify()
        except websockets.ConnectionClosed:
            pass
        conn.close = (ws.close_code, ws.close_reason)
        conn.ready = False
        self.rec.log(self.name, conn.no, "closed",
                     {"code": ws.close_code, "reason": ws.close_reason})
        if self._running and ws.close_code not in self.expected_closes:
            self.rec.violate("unexpected close", self.name, conn.no,
                             f"closed {ws.close_code} {ws.close_reason!r}")
        if self._ws is ws:
            self._ws = None
        self.changes.notify()

    async def _transmit(self, conn, frame):
        """Sends a frame on `conn` if it is still the open connection."""
        if conn is not self.conn or self._ws is None:
            return
        self.rec.log(self.name, conn.no, ">", frame)
        try:
            await self._ws.send(self.codec.encode(frame))
        except websockets.ConnectionClosed:
            pass  # The reader sees the close.

    # ------------------------------------------------------------- sending

    async def _new_send(self):
        self._count += 1
        cid = f"{self.name}-{self._count}"
        to = self.rng.choice(self.targets)
        text = f"{cid} from {self.user}"
        self.sends[cid] = SendRecord(self.user, cid, to, text)
        self.pending[cid] = {"send": {"clientMsgId": cid, "to": to,
                                      "text": text}}
        if self.conn is not None and self.conn.ready:
            await self._send_pending(self.conn, cid)

    async def _send_pending(self, conn, cid):
        if cid in self.pending and conn.ready:
            conn.sent.add(cid)
            await self._transmit(conn, self.pending[cid])

    async def _flush_pending(self, conn):
        for cid in list(self.pending):
            if cid not in conn.sent:
                await self._send_pending(conn, cid)

    async def _retry_later(self, conn, action):
        await asyncio.sleep(self.rng.uniform(0.2, 0.5))
        if conn is self.conn:
            await action()

    def _settle(self, cid, how):
        """A pending send is known stored; `how` says what told us."""
        if self.pending.pop(cid, None) is not None:
            self.sends[cid].settled_by = how

    # ------------------------------------------------------------ frames

    async def receive(self, conn, frame):
        """Handles one frame received on `conn` (the reader calls this for
        every frame; tests feed frames to it directly)."""
        kind = next(iter(frame), None)
        if kind in ("message", "ack", "synced") and conn.welcome_head is None:
            self.rec.violate("frame before welcome", self.name, conn.no,
                             f"{kind} before the welcome", frame)
            return
        handler = {"welcome": self._on_welcome, "message": self._on_message,
                   "ack": self._on_ack, "synced": self._on_synced,
                   "error": self._on_error}.get(kind)
        if handler is not None:
            await handler(conn, frame[kind])

    async def _on_welcome(self, conn, welcome):
        head = int(welcome.get("inboxSeq", 0))
        generation = welcome.get("storeGeneration", "")
        conn.welcome_head = head
        if self.inbox.last is None:
            self.inbox.last = self.start_seq = head
            self.generation = generation
        elif generation != self.generation:
            self.rec.violate("store generation changed", self.name, conn.no,
                             f"{self.generation!r} -> {generation!r} with no "
                             f"restore", welcome)
        elif head < self.inbox.last:
            self.rec.violate("welcome head below resume point", self.name,
                             conn.no, f"head {head} < last {self.inbox.last}",
                             welcome)
        elif head > self.inbox.last:
            await self._start_sync(conn, "barrier")
            return
        conn.ready = True
        await self._flush_pending(conn)

    async def _on_message(self, conn, m):
        seq = int(m.get("inboxSeq", 0))
        cid = m.get("clientMsgId", "")
        own = m.get("from") == self.user
        echo = own and cid in conn.sent
        if echo:
            self.rec.violate("own send echoed", self.name, conn.no,
                             f"message inbox_seq {seq} for our own send {cid}",
                             m)
        elif own and cid in self.pending:
            self._settle(cid, f"replayed message on conn {conn.no}")
        if self.inbox.last < seq < conn.max_live:
            self.rec.violate("out of order", self.name, conn.no,
                             f"live inbox_seq {seq} after {conn.max_live}", m)
        conn.max_live = max(conn.max_live, seq)
        entry = Applied(m.get("messageId", ""), "live", conn.no, m)
        await self._offer(conn, seq, entry, quiet_duplicate=echo)

    async def _on_ack(self, conn, ack):
        cid = ack.get("clientMsgId", "")
        if cid in conn.acked:
            self.rec.violate("ack repeated", self.name, conn.no,
                             f"second ack for {cid} on one connection", ack)
        elif cid not in conn.sent:
            self.rec.violate("ack without send", self.name, conn.no,
                             f"ack for {cid}, not sent on this connection",
                             ack)
        conn.acked.add(cid)
        if cid in self.sends:
            self.sends[cid].acks.append(ack)
            self._settle(cid, "ack")
        entry = Applied(ack.get("messageId", ""), "ack", conn.no, ack)
        await self._offer(conn, int(ack.get("inboxSeq", 0)), entry)

    async def _on_error(self, conn, error):
        code = error.get("code", "")
        cid = error.get("clientMsgId", "")
        if code not in RETRYABLE_ERRORS:
            self.rec.violate("unexpected error", self.name, conn.no,
                             f"{code}: {error.get('message', '')}", error)
            if cid in self.pending:
                self.sends[cid].failed = error
                del self.pending[cid]
        elif cid in self.pending:
            self.tasks.spawn(self._retry_later(
                conn, lambda: self._send_pending(conn, cid)))
        elif self.sync is not None and self.sync.conn is conn:
            self.tasks.spawn(self._retry_later(
                conn, lambda: self._retry_page(conn)))
        else:
            self.rec.violate("unexpected error", self.name, conn.no,
                             f"{code} for no pending request", error)

    # --------------------------------------------------------- inbox rule

    async def _offer(self, conn, seq, entry, quiet_duplicate=False):
        outcome = self.inbox.offer(seq, entry)
        if outcome == "duplicate" and entry.source == "live":
            prior = self.inbox.applied.get(seq)
            if not quiet_duplicate and (prior is None or
                                        prior.source != "sync"):
                self.rec.violate(
                    "duplicate delivery", self.name, conn.no,
                    f"inbox_seq {seq} again (first by "
                    f"{prior.source if prior else '?'} on conn "
                    f"{prior.conn if prior else '?'})", entry.frame)
        elif outcome == "held" and entry.source == "sync":
            self.rec.violate("synced page has a gap", self.name, conn.no,
                             f"inbox_seq {seq} after last {self.inbox.last}",
                             entry.frame)
        elif outcome == "held":
            await self._on_gap(conn, seq, entry)

    async def _on_gap(self, conn, seq, entry):
        """A live message or Ack above last + 1. A gap the client has to
        discover is a violation, unless a barrier sync already covers it or
        the replay cap (--max_replay) explains it."""
        barrier = (self.sync is not None and self.sync.reason == "barrier")
        missing = [s for s in range(self.inbox.last + 1, seq)
                   if s not in self.inbox.held and s not in conn.reported
                   and not (barrier and s <= conn.welcome_head)
                   and not self._replay_capped(conn, s)]
        if missing:
            conn.reported.update(missing)
            self.rec.violate(
                "gap discovered by client", self.name, conn.no,
                f"{entry.source} inbox_seq {seq} with last "
                f"{self.inbox.last}: missing {format_ranges(missing)}",
                entry.frame)
        if self.sync is None:
            await self._start_sync(conn, "gap")

    def _replay_capped(self, conn, seq):
        """True when the replay cap kept `seq` out of this connection's
        replay (the client is expected to sync for it)."""
        if conn.hello_seq is None or conn.welcome_head is None:
            return False
        return conn.hello_seq + self.max_replay < seq <= conn.welcome_head

    async def _start_sync(self, conn, reason):
        self.sync = SyncState(reason, conn)
        await self._request_page(conn)

    async def _request_page(self, conn):
        """Asks for the next page of the sync in flight."""
        sync = {"afterSeq": str(self.inbox.last)}
        if self.sync.reason == "barrier":
            sync["limit"] = conn.welcome_head - self.inbox.last
        elif self.sync.reason == "final":
            sync["limit"] = 1
        await self._transmit(conn, {"sync": sync})

    async def _retry_page(self, conn):
        """Asks again after a retryable error, if the sync is still on."""
        if self.sync is not None and self.sync.conn is conn:
            await self._request_page(conn)

    async def _on_synced(self, conn, synced):
        state = self.sync
        if state is None or state.conn is not conn:
            self.rec.violate("unsolicited synced", self.name, conn.no,
                             "a synced page no sync asked for", synced)
            return
        messages = synced.get("messages", [])
        if state.reason == "final":
            state.page = messages
            state.done.set()
            return
        before = self.inbox.last
        for m in messages:
            await self._apply_synced(conn, state, m)
        if self.inbox.last > before and self._wants_more(conn, state, synced):
            await self._request_page(conn)
            return
        self.sync = None
        if state.reason == "barrier":
            conn.ready = True
            await self._flush_pending(conn)
            if self.inbox.held:  # A gap above the welcome head: reported.
                await self._start_sync(conn, "gap")

    async def _apply_synced(self, conn, state, m):
        seq = int(m.get("inboxSeq", 0))
        if (state.reason == "barrier" and seq > self.inbox.last and
                not self._replay_capped(conn, seq)):
            self.rec.violate(
                "replay incomplete", self.name, conn.no,
                f"inbox_seq {seq} (welcome head {conn.welcome_head}, hello "
                f"{conn.hello_seq}) came only by the barrier sync", m)
        if m.get("from") == self.user and m.get("clientMsgId") in self.pending:
            self._settle(m["clientMsgId"], f"synced page on conn {conn.no}")
        await self._offer(conn, seq,
                          Applied(m.get("messageId", ""), "sync", conn.no, m))

    def _wants_more(self, conn, state, synced):
        """Whether the sync goes on (only asked after a page that made
        progress, so a page the inbox rule cannot apply ends it)."""
        if state.reason == "barrier":
            return self.inbox.last < conn.welcome_head
        return synced.get("more", False)


def format_ranges(seqs):
    """[3, 4, 5, 9] -> "3-5, 9" (for reports)."""
    out = []
    for s in sorted(seqs):
        if out and s == out[-1][1] + 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in out)
