"""A minimal gateway for tests: one GatewayLink.Connect stream from Python.

Written against the .proto contract only (not the C++ code), it plays the part
of parley-gateway: LinkHello first, SessionOpen per client session, frames,
and a reader thread that records every ServiceEvent so tests can wait on them.

    link = LinkClient(pb, service.link_address)
    link.open("s1", token)            # -> the SessionAccepted/Rejected event
    link.send("s1", "c1", user="bob", text="hi")
    ack = link.wait_ack("s1", "c1")
"""

import queue
import threading
import time

import grpc


def session_frames(delivery):
    """(session_id, frame) for each session a Delivery names, the frame as
    the gateway sends it: with that session's inbox_seq when the Delivery
    lists them (a group message crosses the link once per stream)."""
    for i, session_id in enumerate(delivery.session_ids):
        frame = delivery.frame
        if i < len(delivery.inbox_seqs):
            frame = type(delivery.frame)()
            frame.CopyFrom(delivery.frame)
            frame.message.inbox_seq = delivery.inbox_seqs[i]
        yield session_id, frame


class LinkClient:
    def __init__(self, pb, address, gateway_id="py-gateway",
                 channel_options=None):
        self.pb = pb
        self.channel = grpc.insecure_channel(address,
                                             options=channel_options or [])
        self.stub = pb.gateway_link_grpc.GatewayLinkStub(self.channel)
        self._out = queue.Queue()
        self._cond = threading.Condition()
        self.events = []
        self.acks = {}  # (session_id, client_msg_id) -> the latest Ack
        self.ended = None  # The grpc.RpcError (or "ok") that ended the stream.
        self._call = self.stub.Connect(self._requests())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.write(pb.gateway_link.GatewayEvent(
            hello=pb.gateway_link.LinkHello(gateway_id=gateway_id)))

    def _requests(self):
        while True:
            batch = self._out.get()
            if batch is None:
                return
            yield batch

    def _read(self):
        try:
            for batch in self._call:
                with self._cond:
                    self.events.extend(batch.events)
                    for e in batch.events:
                        if (e.HasField("delivery") and
                                e.delivery.frame.HasField("ack")):
                            for sid in e.delivery.session_ids:
                                self.acks[(sid, e.delivery.frame.ack
                                           .client_msg_id)] = (
                                    e.delivery.frame.ack)
                    self._cond.notify_all()
            ended = "ok"
        except grpc.RpcError as e:  # The stream broke or was ended.
            ended = e
        with self._cond:
            self.ended = ended
            self._cond.notify_all()

    def write(self, *events):
        self._out.put(self.pb.gateway_link.GatewayBatch(events=list(events)))

    def close(self):
        self._out.put(None)
        self._call.cancel()
        self.channel.close()

    def wait(self, predicate, timeout=20.0):
        """Waits for the first event with predicate(event) true; returns it."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                while seen < len(self.events):
                    event = self.events[seen]
                    seen += 1
                    if predicate(event):
                        return event
                if self.ended is not None:
                    raise RuntimeError(f"link ended: {self.ended}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching link event")
                self._cond.wait(left)

    def wait_ended(self, timeout=20.0):
        """Waits for the stream to end; returns what ended it."""
        with self._cond:
            self._cond.wait_for(lambda: self.ended is not None, timeout)
            return self.ended

    def open(self, session_id, token, resume_after=None, reannounce=False):
        """Opens a session: a new device without `resume_after`, else a
        resume after that inbox_seq (0 included)."""
        gl = self.pb.gateway_link
        open_ = gl.SessionOpen(session_id=session_id, token=token,
                               peer_address="127.0.0.1:1", reannounce=reannounce)
        if resume_after is not None:
            open_.resume_after = resume_after
        self.write(gl.GatewayEvent(open=open_))
        return self.wait(lambda e: (
            (e.HasField("accepted") and e.accepted.session_id == session_id) or
            (e.HasField("rejected") and e.rejected.session_id == session_id)))

    def frame(self, session_id, **frame):
        gl = self.pb.gateway_link
        self.write(gl.GatewayEvent(frame=gl.SessionFrame(
            session_id=session_id, frame=self.pb.client.ClientFrame(**frame))))

    def send(self, session_id, client_msg_id, text, user=None, group=None):
        c = self.pb.client
        to = c.Recipient(user=user) if user else c.Recipient(group=group)
        self.frame(session_id, send=c.Send(client_msg_id=client_msg_id, to=to,
                                           text=text))

    def snapshot(self):
        """Every event received so far."""
        with self._cond:
            return list(self.events)

    def frames_for(self, session_id, kind):
        """Frames of one kind ("ack", "message", ...) delivered to a session."""
        with self._cond:
            return [frame for e in self.events if e.HasField("delivery")
                    for sid, frame in session_frames(e.delivery)
                    if sid == session_id
                    and frame.WhichOneof("frame") == kind]

    def wait_ack(self, session_id, client_msg_id, timeout=20.0):
        key = (session_id, client_msg_id)
        with self._cond:
            if not self._cond.wait_for(
                    lambda: key in self.acks or self.ended is not None,
                    timeout):
                raise TimeoutError(f"no Ack for {client_msg_id}")
            if key not in self.acks:
                raise RuntimeError(f"link ended: {self.ended}")
            return self.acks[key]

    def ack_count(self):
        with self._cond:
            return len(self.acks)

    def sync_all(self, session_id, page=100):
        """Every message of the session's inbox, by Sync pages from 0."""
        out = []
        after = 0
        while True:
            before = len(self.frames_for(session_id, "synced"))
            self.frame(session_id, sync=self.pb.client.Sync(after_seq=after,
                                                            limit=page))
            self.wait(lambda e: len(self.frames_for(session_id, "synced")) >
                      before)
            synced = self.frames_for(session_id, "synced")[before].synced
            out.extend(synced.messages)
            if not synced.more:
                return out
            after = synced.messages[-1].inbox_seq
