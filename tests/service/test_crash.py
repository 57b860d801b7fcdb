"""Durability across a crash: the real parley-service binary is SIGKILLed
while sends are in flight, restarted on the same data directory, and every
message that was acknowledged must be there with the seq and inbox_seq its
Ack (and its live deliveries) announced.

Run: /usr/bin/python3 -m pytest tests/service (after `bazel build
//service:parley-service`; PARLEY_BIN_DIR points elsewhere if needed).
"""

import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402
from link_client import LinkClient, session_frames  # noqa: E402

USERS = ("alice", "bob", "carol")
KILL_AFTER_ACKS = 400
MAX_SENDS = 5000


def _setup_users(admin):
    for user in USERS:
        admin.call("CreateUser", id=user)
    admin.call("CreateGroup", id="team", members=list(USERS))


def _open_all(link, svc):
    for user in USERS:
        answer = link.open(f"s-{user}", harness.mint_token(svc.token_secret,
                                                           user))
        assert answer.HasField("accepted"), answer


def test_every_acked_message_survives_sigkill(tmp_path, procs, pb):
    data_dir = str(tmp_path / "data")
    svc = procs.add(harness.start_service(str(tmp_path), data_dir=data_dir,
                                          name="service-1"))
    admin = harness.AdminClient(svc)
    _setup_users(admin)
    link = LinkClient(pb, svc.link_address)
    _open_all(link, svc)

    # Three users send without pause (direct and group messages, so group
    # commits mix conversations and inboxes) until the process is killed.
    sent = {}  # client_msg_id -> (session, conversation)
    stop = threading.Event()

    def send_forever():
        i = 0
        while not stop.is_set() and i < MAX_SENDS:
            sender = USERS[i % 3]
            cid = f"{sender}-{i}"
            if i % 4 == 0:
                sent[cid] = (f"s-{sender}", "g:team")
                link.send(f"s-{sender}", cid, f"group {i}", group="team")
            else:
                peer = USERS[(i + 1) % 3]
                sent[cid] = (f"s-{sender}",
                             "d:" + ":".join(sorted((sender, peer))))
                link.send(f"s-{sender}", cid, f"direct {i}", user=peer)
            i += 1
            if i % 50 == 0:
                time.sleep(0.005)  # Keep the backlog modest.

    sender = threading.Thread(target=send_forever)
    sender.start()

    # SIGKILL once enough Acks are in, with sends still in flight.
    def enough(_):
        return link.ack_count() >= KILL_AFTER_ACKS
    try:
        link.wait(enough, timeout=60)
    finally:
        svc.kill()
        stop.set()
        sender.join()
    seen = link.snapshot()
    link.close()

    acks = {}
    live = {}  # (session, inbox_seq) -> message_id delivered live
    for e in seen:
        if not e.HasField("delivery"):
            continue
        for session, frame in session_frames(e.delivery):
            if frame.HasField("ack"):
                acks[frame.ack.client_msg_id] = frame.ack
            elif frame.HasField("message"):
                live[(session, frame.message.inbox_seq)] = (
                    frame.message.message_id)
    print(f"sent={len(sent)} acked={len(acks)} live={len(live)}")
    assert len(acks) >= KILL_AFTER_ACKS
    assert len(acks) < len(sent), "the kill came too late to test anything"

    # Restart on the same data directory.
    svc2 = procs.add(harness.start_service(str(tmp_path), data_dir=data_dir,
                                           name="service-2"))
    admin2 = harness.AdminClient(svc2)

    # Every acked message is in its conversation at the acked seq.
    history = {}
    for conv in {c for _, c in sent.values()}:
        before = 0
        while True:
            page = admin2.call("GetHistory", conversation=conv,
                               before_seq=before, limit=1000)
            for m in page.messages:
                history[(conv, m.seq)] = m
            if not page.more:
                break
            before = page.messages[0].seq
    for cid, ack in acks.items():
        stored = history.get((ack.conversation, ack.seq))
        assert stored is not None, f"acked {cid} lost"
        assert stored.message_id == ack.message_id
        assert stored.client_msg_id == cid

    # Every inbox is gapless, holds each message once, and the acked inbox_seq
    # (and every live delivery) points at the same message after the restart.
    link2 = LinkClient(pb, svc2.link_address)
    _open_all(link2, svc2)
    for user in USERS:
        inbox = link2.sync_all(f"s-{user}")
        assert [m.inbox_seq for m in inbox] == list(range(1, len(inbox) + 1))
        ids = [m.message_id for m in inbox]
        assert len(ids) == len(set(ids)), f"{user} has a message twice"
        by_seq = {m.inbox_seq: m for m in inbox}
        for cid, ack in acks.items():
            if cid.startswith(user + "-"):
                assert by_seq[ack.inbox_seq].message_id == ack.message_id
        for (session, inbox_seq), message_id in live.items():
            if session == f"s-{user}":
                assert by_seq[inbox_seq].message_id == message_id

    # Resending everything: acked ones get their original Ack back and
    # nothing is stored twice; the rest are stored now.
    stats_before = admin2.call("GetStats").stored_messages
    for cid, (session, conv) in sent.items():
        peer = None if conv == "g:team" else next(
            u for u in conv[2:].split(":") if f"s-{u}" != session)
        if peer is None:
            link2.send(session, cid, "again", group="team")
        else:
            link2.send(session, cid, "again", user=peer)
    for cid, (session, _) in sent.items():
        ack = link2.wait_ack(session, cid)
        if cid in acks:
            assert ack.message_id == acks[cid].message_id
            assert ack.inbox_seq == acks[cid].inbox_seq
    stats_after = admin2.call("GetStats").stored_messages
    # Sends committed just before the kill may have lost only their Ack. The
    # group's creation is a stored message (its event) too.
    assert len(acks) + 1 <= stats_before <= len(sent) + 1
    assert stats_after == len(sent) + 1
    link2.close()
    admin.close()
    admin2.close()
