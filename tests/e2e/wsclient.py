"""A small Parley client for the end-to-end tests, written from
proto/parley/v1/client.proto (JSON subprotocol) on Debian's python3-websockets
10.4, independently of the gateway's C++.

It applies the client protocol's inbox rule: `last` is the highest inbox_seq
applied (an ack's inbox_seq counts like a message's); a message at or below it
is a duplicate, one above last + 1 is a gap that is held while the client syncs
from `last` (counted in `gap_syncs`). A `message` that is one of this client's
own sends (the session must get its ack instead) is counted in `echoes`.
"""

import asyncio
import json

import websockets


class Client:
    def __init__(self, address, token, device="", inbox_seq=None, name="",
                 store_generation=""):
        """`inbox_seq` None is a new device, which starts at the welcome's
        head; a number (0 included) resumes after it, in `store_generation`
        when given: a welcome from another generation voids it (`resets`
        counts that; the inbox is replayed from its start)."""
        self.uri = f"ws://{address}/?token={token}"
        if device:
            self.uri += f"&device={device}"
        if inbox_seq is not None:
            self.uri += f"&inboxSeq={inbox_seq}"
        if store_generation:
            self.uri += f"&storeGeneration={store_generation}"
        self.store_generation = store_generation
        self.resets = 0
        self.name = name or device or "client"
        self.ws = None
        self.frames = asyncio.Queue()
        self.welcome = None
        self.new_device = inbox_seq is None
        self.last = inbox_seq or 0  # Highest inbox_seq applied.
        self.applied = []           # Messages applied, in order.
        self.wire_duplicates = 0    # Messages received at or below `last`.
        self.held = {}              # inbox_seq -> message, beyond a gap.
        self.syncing = False
        self.gap_syncs = 0          # Syncs a gap made this client send.
        self.sent_ids = set()       # clientMsgIds this client sent.
        self.echoes = []            # Own sends that came back as `message`.
        self.acks = {}              # clientMsgId -> ack
        self.errors = []
        # The whole frames of `errors` (with their requestId).
        self.error_frames = []
        self.closed = None          # (code, reason) once the socket closed.
        self._reader = None
        self._changed = asyncio.Event()

    async def connect(self, timeout=10):
        self.ws = await websockets.connect(
            self.uri, subprotocols=["parley.v1.json"], max_size=1 << 20,
            ping_interval=None)
        assert self.ws.subprotocol == "parley.v1.json"
        self._reader = asyncio.create_task(self._read())
        self.welcome = await self.wait_for(
            lambda: self._welcome, timeout, "welcome")
        return self

    _welcome = None

    async def _read(self):
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                await self._handle(frame)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = (self.ws.close_code, self.ws.close_reason)
            self._changed.set()

    async def _handle(self, frame):
        if "welcome" in frame:
            self._welcome = frame["welcome"]
            generation = self._welcome.get("storeGeneration", "")
            if self.new_device:
                self.last = int(self._welcome.get("inboxSeq", 0))
            elif self.store_generation and generation != self.store_generation:
                self.last = 0
                self.resets += 1
            self.store_generation = generation
        elif "ack" in frame:
            ack = frame["ack"]
            self.acks[ack["clientMsgId"]] = ack
            if "inboxSeq" in ack:
                await self._offer(dict(ack, own=True), from_sync=True)
        elif "message" in frame:
            m = frame["message"]
            if m.get("clientMsgId") in self.sent_ids and (
                    m.get("from") == self.welcome_user()):
                self.echoes.append(m)
            await self._offer(m)
        elif "synced" in frame:
            for m in frame["synced"].get("messages", []):
                await self._offer(m, from_sync=True)
            if frame["synced"].get("more"):
                await self.send({"sync": {"afterSeq": str(self.last)}})
            else:
                self.syncing = False
                await self._apply_held()
        elif "error" in frame:
            self.errors.append(frame["error"])
            self.error_frames.append(frame)
        else:
            await self.frames.put(frame)

    async def _offer(self, m, from_sync=False):
        seq = int(m["inboxSeq"])
        if seq <= self.last:
            if not from_sync:
                self.wire_duplicates += 1
            return
        if seq == self.last + 1:
            self._apply(m)
            await self._apply_held()
            return
        self.held[seq] = m
        if not self.syncing:
            self.syncing = True
            self.gap_syncs += 1
            await self.send({"sync": {"afterSeq": str(self.last)}})

    def _apply(self, m):
        if not m.get("own"):
            self.applied.append(m)
        self.last = int(m["inboxSeq"])

    def welcome_user(self):
        return (self._welcome or {}).get("userId")

    async def _apply_held(self):
        while self.last + 1 in self.held:
            self._apply(self.held.pop(self.last + 1))
        for seq in [s for s in self.held if s <= self.last]:
            del self.held[seq]

    async def send(self, frame):
        await self.ws.send(json.dumps(frame))

    async def send_text(self, client_msg_id, to_user, text):
        self.sent_ids.add(client_msg_id)
        await self.send({"send": {"clientMsgId": client_msg_id,
                                  "to": {"user": to_user}, "text": text}})

    async def wait_for(self, predicate, timeout=10, what="condition"):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(
                    f"{self.name}: timed out waiting for {what}; "
                    f"closed={self.closed} errors={self.errors[-3:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def close(self):
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await self._reader
