"""The end-of-run checks against the store's truth.

The truth is read after the quiet period, when nothing is sent any more:
  * every conversation's messages through Admin.GetHistory (paged by seq);
  * every user's inbox (inbox_seq -> message) through the GatewayLink itself,
    as a Python "gateway" opening one new-device session per user and
    syncing from 0 (tests/service/link_client.py), so no parley-gateway code
    is on that path. The admin API has no inbox read.

Each check_* function appends Violations to the Recorder; the rules are listed
in fault_run.py's docstring.
"""

import dataclasses
import os
import sys

import grpc
from google.protobuf import json_format

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "service"))

import harness  # noqa: E402
from fault_client import format_ranges  # noqa: E402
from link_client import LinkClient  # noqa: E402

# Fields a delivered message must share with the stored one.
MESSAGE_FIELDS = ("messageId", "conversation", "seq", "from", "text",
                  "clientMsgId")


@dataclasses.dataclass
class StoreTruth:
    """What the store holds at the end of a run."""
    history: dict  # conversation -> [message dict], by seq
    inbox: dict  # user -> {inbox_seq: message dict}
    audience: dict  # conversation -> set of users whose inbox it enters

    def by_id(self):
        return {m["messageId"]: m for ms in self.history.values() for m in ms}


def conversations(users, groups):
    """Every conversation the population can use, with its audience."""
    audience = {f"g:{g}": set(members) for g, members in groups.items()}
    for i, a in enumerate(users):
        for b in users[i + 1:]:
            audience["d:" + ":".join(sorted((a, b)))] = {a, b}
    return audience


def read_history(admin, conversation):
    """A conversation's messages, oldest first (admin GetHistory pages)."""
    pages = []
    before = 0
    while True:
        try:
            page = admin.call("GetHistory", conversation=conversation,
                              before_seq=before, limit=1000)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                return []
            raise
        messages = [json_format.MessageToDict(m) for m in page.messages]
        pages.insert(0, messages)
        if not page.more or not messages:
            return [m for p in pages for m in p]
        before = int(messages[0]["seq"])


def read_inboxes(service, users, tag):
    """Every user's inbox, read over a GatewayLink stream of our own (`tag`
    keeps the session ids of two reads apart)."""
    pb = harness.protos()
    link = LinkClient(pb, service.link_address, gateway_id=f"auditor-{tag}")
    try:
        inbox = {}
        for user in users:
            session = f"audit-{tag}-{user}"
            answer = link.open(session,
                               harness.mint_token(service.token_secret, user))
            if not answer.HasField("accepted"):
                raise RuntimeError(f"auditor session for {user}: {answer}")
            inbox[user] = {
                m.inbox_seq: json_format.MessageToDict(m)
                for m in link.sync_all(session, page=1000)}
        return inbox
    finally:
        link.close()


def read_truth(service, admin, users, groups):
    """The store's truth (blocking; run it in a thread)."""
    audience = conversations(users, groups)
    history = {c: read_history(admin, c) for c in audience}
    return StoreTruth(history, read_inboxes(service, users, "final"),
                      audience)


def check_store(truth, rec):
    """Seq gapless per conversation, inbox_seq gapless per user, each message
    in exactly its audience's inboxes, idempotent by (from, clientMsgId)."""
    for conv, messages in truth.history.items():
        seqs = [int(m["seq"]) for m in messages]
        if seqs != list(range(1, len(seqs) + 1)):
            rec.violate("conversation seq gap", "store", 0,
                        f"{conv} has seqs {seqs[:50]}")
    for user, inbox in truth.inbox.items():
        if sorted(inbox) != list(range(1, len(inbox) + 1)):
            rec.violate("inbox seq gap", "store", 0,
                        f"{user}'s inbox has {format_ranges(inbox)}")
    _check_audiences(truth, rec)
    seen = {}
    for m in truth.by_id().values():
        key = (m.get("from"), m.get("clientMsgId"))
        if key in seen:
            rec.violate("stored twice", "store", 0,
                        f"{key} is messages {seen[key]} and {m['messageId']}")
        seen[key] = m["messageId"]


def _check_audiences(truth, rec):
    holders = {}  # messageId -> [user, ...] whose inbox holds it
    stored = truth.by_id()
    for user, inbox in truth.inbox.items():
        for seq, m in inbox.items():
            holders.setdefault(m["messageId"], []).append(user)
            if m["messageId"] not in stored:
                rec.violate("inbox entry not in history", "store", 0,
                            f"{user} inbox_seq {seq}", m)
            elif _differs(m, stored[m["messageId"]]):
                rec.violate("inbox entry differs from history", "store", 0,
                            f"{user} inbox_seq {seq}", m)
    for mid, m in stored.items():
        want = sorted(truth.audience[m["conversation"]])
        have = sorted(holders.get(mid, []))
        if have != want:
            rec.violate("inbox audience", "store", 0,
                        f"message {mid} in {m['conversation']} is in the "
                        f"inboxes of {have}, expected {want}", m)


def _differs(delivered, stored):
    return any(str(delivered.get(f, "")) != str(stored.get(f, ""))
               for f in MESSAGE_FIELDS)


def check_sends(truth, sends, rec):
    """Every send settled; every Ack agrees with the store and with the
    other Acks of the same send; every stored message was sent by us; a send
    refused with a non-retryable error is not stored."""
    stored = truth.by_id()
    by_key = {(m.get("from"), m.get("clientMsgId")): m
              for m in stored.values()}
    for s in sends:
        message = by_key.get((s.sender, s.cid))
        if s.failed is not None:
            if message is not None:
                rec.violate("failed send stored", s.sender, 0,
                            f"{s.cid} failed ({s.failed}) yet is stored",
                            message)
            continue
        if not s.settled_by:
            rec.violate("send never acked", s.sender, 0,
                        f"{s.cid} to {s.to}: "
                        f"{'stored' if message else 'not stored'}", message)
        for ack in s.acks:
            _check_ack(truth, s, ack, message, rec)
    sent = {(s.sender, s.cid) for s in sends}
    for key, m in by_key.items():
        # The set-up's CreateGroup calls store the groups' creation events.
        if m.get("kind") == "MESSAGE_KIND_GROUP_EVENT":
            continue
        if key not in sent:
            rec.violate("stored message nobody sent", "store", 0,
                        f"{key}", m)


def _check_ack(truth, send, ack, message, rec):
    inbox_entry = truth.inbox.get(send.sender, {}).get(int(ack["inboxSeq"]))
    if (message is None or ack["messageId"] != message["messageId"] or
            ack.get("conversation") != message["conversation"] or
            int(ack.get("seq", 0)) != int(message["seq"]) or
            inbox_entry is None or
            inbox_entry["messageId"] != ack["messageId"]):
        rec.violate("ack disagrees with store", send.sender, 0,
                    f"{send.cid}: ack {ack}, stored {message}, sender's "
                    f"inbox at {ack['inboxSeq']}: {inbox_entry}", ack)


def check_deliveries(truth, devices, received, rec):
    """Per device: every message of the user's inbox after the device's
    first welcome head was applied, each at its inbox_seq and equal to the
    store's. Per received frame: the message is stored, at that inbox_seq of
    the receiving user."""
    for d in devices:
        _check_device(truth.inbox.get(d.user, {}), d, rec)
    for device, user, conn, m in received:
        _check_received(truth, device, user, conn, m, rec)


def _check_device(inbox, d, rec):
    if d.start_seq is None:
        rec.violate("never welcomed", d.name, 0, "no welcome at all")
        return
    head = max(inbox, default=0)
    missing = [s for s in range(d.start_seq + 1, head + 1)
               if s not in d.inbox.applied]
    if missing:
        rec.violate("never delivered", d.name, 0,
                    f"inbox_seqs {format_ranges(missing)} of {d.user} (head "
                    f"{head}, device started at {d.start_seq}) never reached "
                    f"it")
    beyond = [s for s in d.inbox.applied if s > head]
    if beyond:
        rec.violate("delivered beyond the store's head", d.name, 0,
                    f"inbox_seqs {format_ranges(beyond)}; head {head}")


def _check_received(truth, device, user, conn, m, rec):
    stored = truth.inbox.get(user, {}).get(int(m.get("inboxSeq", 0)))
    if stored is None or _differs(m, stored):
        rec.violate("message disagrees with store", device, conn,
                    f"{user}'s inbox at {m.get('inboxSeq')} holds {stored}",
                    m)
