"""End to end: real parley-service + parley-gateway processes, clients on
Debian's python3-websockets (tests/e2e/wsclient.py)."""

import asyncio
import signal
import time

from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_two_users_chat(stack):
    alice, bob = stack.user("alice"), stack.user("bob")

    async def scenario():
        a = await Client(stack.gateway.address, stack.token(alice),
                         name="alice").connect()
        b = await Client(stack.gateway.address, stack.token(bob),
                         name="bob").connect()
        assert a.welcome["userId"] == "alice"
        await a.send_text("a-1", "bob", "hi bob")
        ack = await a.wait_for(lambda: a.acks.get("a-1"), what="ack a-1")
        await b.wait_for(lambda: b.applied, what="bob's message")
        m = b.applied[0]
        assert (m["from"], m["text"], m["messageId"]) == (
            "alice", "hi bob", ack["messageId"])
        assert m["conversation"] == ack["conversation"] == "d:alice:bob"
        await b.send_text("b-1", "alice", "hi alice")
        await a.wait_for(
            lambda: any(x["text"] == "hi alice" for x in a.applied),
            what="alice's reply")
        assert not a.errors and not b.errors
        await a.close()
        await b.close()

    run(scenario())


def test_two_devices_of_one_user_both_receive(stack):
    alice, bob = stack.user("alice"), stack.user("bob")

    async def scenario():
        a = await Client(stack.gateway.address, stack.token(alice),
                         name="alice").connect()
        phone = await Client(stack.gateway.address, stack.token(bob),
                             device="phone").connect()
        laptop = await Client(stack.gateway.address, stack.token(bob),
                              device="laptop").connect()
        await a.send_text("a-1", "bob", "to both devices")
        for device in (phone, laptop):
            await device.wait_for(lambda d=device: d.applied,
                                  what="message on " + device.name)
        assert phone.applied[0]["messageId"] == laptop.applied[0]["messageId"]
        assert phone.applied[0]["inboxSeq"] == laptop.applied[0]["inboxSeq"]
        # A send from one device reaches the user's other device too.
        await phone.send_text("p-1", "alice", "from the phone")
        await laptop.wait_for(
            lambda: any(m.get("clientMsgId") == "p-1" for m in laptop.applied),
            what="own send on the other device")
        for c in (a, phone, laptop):
            await c.close()

    run(scenario())


def test_reconnect_with_inbox_seq_syncs_exactly_the_missed_messages(stack):
    alice, bob = stack.user("alice"), stack.user("bob")

    async def scenario():
        a = await Client(stack.gateway.address, stack.token(alice),
                         name="alice").connect()
        b = await Client(stack.gateway.address, stack.token(bob),
                         name="bob").connect()
        await a.send_text("m-1", "bob", "before")
        await b.wait_for(lambda: b.applied, what="first message")
        seen = b.last
        await b.close()

        for i in range(2, 6):
            await a.send_text(f"m-{i}", "bob", f"missed {i}")
        await a.wait_for(lambda: len(a.acks) == 5, what="acks")

        # Resume with the last applied inbox_seq: the service replays exactly
        # what was missed, in order, before live traffic.
        b2 = await Client(stack.gateway.address, stack.token(bob),
                          inbox_seq=seen, name="bob-again").connect()
        await b2.wait_for(lambda: len(b2.applied) >= 4, what="replay")
        assert [m["text"] for m in b2.applied] == [
            f"missed {i}" for i in range(2, 6)]
        assert b2.wire_duplicates == 0

        # An explicit sync from the same point returns the same four.
        synced = asyncio.get_running_loop().create_future()
        b3 = await Client(stack.gateway.address, stack.token(bob),
                          name="bob-sync").connect()
        b3.last = seen
        orig = b3._handle

        async def capture(frame):
            if "synced" in frame and not synced.done():
                synced.set_result(frame["synced"])
            await orig(frame)

        b3._handle = capture
        await b3.send({"sync": {"afterSeq": str(seen)}})
        page = await asyncio.wait_for(synced, 10)
        assert [m["text"] for m in page["messages"]] == [
            f"missed {i}" for i in range(2, 6)]
        assert [int(m["inboxSeq"]) for m in page["messages"]] == list(
            range(seen + 1, seen + 5))
        for c in (a, b2, b3):
            await c.close()

    run(scenario())


def test_service_restart_during_traffic_loses_nothing_and_closes_nothing(stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    total = 300
    window = 20

    async def scenario():
        a = await Client(stack.gateway.address, stack.token(alice),
                         name="alice").connect()
        b = await Client(stack.gateway.address, stack.token(bob),
                         name="bob").connect()
        restarted = asyncio.Event()

        async def sender():
            for i in range(total):
                # Keep at most `window` sends unacknowledged.
                await a.wait_for(lambda i=i: i - len(a.acks) < window,
                                 timeout=60, what="window")
                await a.send_text(f"r-{i}", "bob", f"msg {i}")
                if i == total // 3:
                    restarted.set()
                # 40/s: under the gateway's default 50 frames/s per client.
                await asyncio.sleep(0.025)

        async def restarter():
            await restarted.wait()
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, stack.restart_service)

        await asyncio.gather(sender(), restarter())
        await a.wait_for(lambda: len(a.acks) == total, timeout=60,
                         what="every ack")
        await b.wait_for(lambda: len(b.applied) >= total, timeout=60,
                         what="every message")
        # Every acknowledged message arrived once, in inbox order, no gaps.
        texts = [m["text"] for m in b.applied]
        assert sorted(texts, key=lambda t: int(t.split()[1])) == [
            f"msg {i}" for i in range(total)]
        assert len(set(m["messageId"] for m in b.applied)) == total
        ids = {ack["messageId"] for ack in a.acks.values()}
        assert ids == {m["messageId"] for m in b.applied}
        seqs = [int(m["inboxSeq"]) for m in b.applied]
        assert seqs == list(range(seqs[0], seqs[0] + total))
        # No client socket was closed.
        assert a.closed is None and b.closed is None
        assert not a.errors and not b.errors
        print(f"wire duplicates at bob: {b.wire_duplicates}; "
              f"errors at alice: {len(a.errors)}")
        await a.close()
        await b.close()

    start = time.monotonic()
    run(scenario())
    # The gateway saw the stream break and come back.
    stack.gateway.wait_for_event("gateway.upstream_down", timeout=1)
    print(f"restart scenario took {time.monotonic() - start:.1f}s")


def test_after_a_service_restart_every_session_resumes_from_what_it_was_told(
        stack):
    """Issue 15: sessions whose resume point came from the welcome head or an
    ack (not from a delivered message) must get what was stored while the
    link was down, live, and a session must never get its own send back."""
    alice, bob, carol, dave, erin = (stack.user(u) for u in (
        "alice", "bob", "carol", "dave", "erin"))

    def admin_send(to, text):
        return stack.admin.call("SendMessage", **{
            "from": bob, "to": {"user": to}, "text": text})

    async def scenario():
        clients = {}
        for user in (alice, carol, dave, erin):
            clients[user] = await Client(stack.gateway.address,
                                         stack.token(user), name=user).connect()
        a, c, d, e = (clients[u] for u in (alice, carol, dave, erin))
        # carol and alice have received a message; alice and erin have sent
        # one (an ack, the last frame that told them an inbox_seq); dave is
        # idle with an empty inbox.
        admin_send(carol, "before")
        admin_send(alice, "before")
        await c.wait_for(lambda: c.applied, what="carol's first message")
        await a.wait_for(lambda: a.applied, what="alice's first message")
        await a.send_text("a-1", "bob", "from alice")
        await e.send_text("e-1", "bob", "from erin")
        await a.wait_for(lambda: "a-1" in a.acks, what="ack a-1")
        await e.wait_for(lambda: "e-1" in e.acks, what="ack e-1")

        # The gateway is held still while the service dies and comes back and
        # three messages are stored, so that they are stored before its
        # sessions are re-announced.
        loop = asyncio.get_running_loop()
        stack.gateway.send_signal(signal.SIGSTOP)
        try:
            await loop.run_in_executor(None, stack.restart_service)
            for user in (alice, carol, dave, erin):
                admin_send(user, "while away")
        finally:
            stack.gateway.send_signal(signal.SIGCONT)

        for user, client in clients.items():
            await client.wait_for(
                lambda client=client: any(
                    m["text"] == "while away" for m in client.applied),
                timeout=30, what=f"{user}'s message stored while away")
        # One more round, so that an echo in flight would have arrived.
        for user in (alice, erin):
            admin_send(user, "after")
        for client in (a, e):
            await client.wait_for(
                lambda client=client: client.applied[-1]["text"] == "after",
                what="the last message")
        for user, client in clients.items():
            assert client.gap_syncs == 0, (
                f"{user} had to discover a gap itself: {client.applied}")
            assert client.echoes == [], f"{user} got its own send back"
            assert client.closed is None and not client.errors, user
            seqs = [int(m["inboxSeq"]) for m in client.applied]
            assert seqs == sorted(set(seqs)), (user, seqs)
        for client in clients.values():
            await client.close()

    run(scenario())


def test_two_gateways_one_with_two_streams_survive_a_restart(stack):
    """Alice on the default gateway, Bob on a second gateway that spreads its
    sessions over two link streams; a service restart in the middle."""
    import harness
    alice, bob = stack.user("alice"), stack.user("bob")
    gw2 = stack.procs.add(harness.start_gateway(
        stack.tmp_path, stack.service.link_address,
        extra=["--upstream_streams=2"], name="gateway2"))
    gw2.wait_for_event("gateway.upstream_up", stream="0")
    gw2.wait_for_event("gateway.upstream_up", stream="1")

    async def scenario():
        a = await Client(stack.gateway.address, stack.token(alice),
                         name="alice").connect()
        bobs = [await Client(gw2.address, stack.token(bob),
                             device=f"dev{i}", name=f"bob{i}").connect()
                for i in range(8)]
        await a.send_text("x-0", "bob", "before")
        for b in bobs:
            await b.wait_for(lambda b=b: len(b.applied) == 1, what="before")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, stack.restart_service)
        for i in range(1, 11):
            await a.send_text(f"x-{i}", "bob", f"after {i}")
        await a.wait_for(lambda: len(a.acks) == 11, timeout=30, what="acks")
        for b in bobs:
            await b.wait_for(lambda b=b: len(b.applied) == 11, timeout=30,
                             what="all messages on " + b.name)
            assert [m["text"] for m in b.applied] == ["before"] + [
                f"after {i}" for i in range(1, 11)]
            assert b.closed is None
        assert a.closed is None
        for c in [a, *bobs]:
            await c.close()

    run(scenario())
