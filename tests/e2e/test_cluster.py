"""End to end on the scaled-out shape (docs/scaling.md): a real PostgreSQL
and nats-server, two parley-service replicas on them, two gateways. Gateway
A links only to replica 1 and gateway B only to replica 2, so a client on A
and one on B are always served by different replicas and everything between
them crosses NATS: 1:1 and group chat, presence, typing, receipts, and the
operator's kick, broadcast and session list called on either replica.

Failover (gateways given both replicas, replicas killed under traffic) is the
fault checker's (tests/fault, --topology scaled-out)."""

import asyncio

import pytest

import engines
import harness
from wsclient import Client


class Cluster:
    def __init__(self, tmp_path, procs):
        self.tmp = str(tmp_path)
        self.pg = engines.start_postgres(procs, self.tmp)
        self.nats = engines.start_nats(procs, self.tmp)
        self.replicas = [
            procs.add(harness.start_service(
                self.tmp, data_dir=f"{self.tmp}/replica{i}",
                name=f"replica{i}",
                extra=[f"--store={self.pg.url}", f"--nats={self.nats.url}",
                       f"--replica_id=replica{i}"]))
            for i in (1, 2)]
        self.gateways = [
            procs.add(harness.start_gateway(self.tmp, r, name=f"gateway{i}"))
            for i, r in zip("AB", self.replicas)]
        self.admins = [harness.AdminClient(r) for r in self.replicas]

    def token(self, user):
        return harness.mint_token(self.replicas[0].token_secret, user)

    def client(self, gateway, user):
        return Client(self.gateways[gateway].address, self.token(user),
                      name=user)

    def close(self):
        for a in self.admins:
            a.close()


@pytest.fixture
def cluster(tmp_path, procs):
    c = Cluster(tmp_path, procs)
    # Users and groups made through one replica are every replica's.
    for user in ("alice", "bob", "carol"):
        c.admins[0].call("CreateUser", id=user)
    c.admins[1].call("CreateGroup", id="team",
                     members=["alice", "bob", "carol"])
    yield c
    c.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 90))


async def next_frame(client, kind, timeout=15):
    """The next frame of `kind` among the frames the client does not apply
    itself (presence, typing, receipts, announcements, pongs)."""
    while True:
        frame = await asyncio.wait_for(client.frames.get(), timeout)
        if kind in frame:
            return frame[kind]


def sessions(admin, user=""):
    return admin.call("ListSessions", user_id=user).sessions


def test_chat_across_replicas_1to1_and_group(cluster):
    async def scenario():
        a = await cluster.client(0, "alice").connect()
        b = await cluster.client(1, "bob").connect()
        c = await cluster.client(1, "carol").connect()
        # Each replica serves the sessions of its gateway.
        for admin, users in zip(cluster.admins,
                                ({"alice"}, {"bob", "carol"})):
            mine = {s.user_id for s in sessions(admin)
                    if s.gateway_id == sessions(admin, next(iter(users)))[0]
                    .gateway_id}
            assert users <= mine

        await a.send_text("a-1", "bob", "hi bob, from replica 1")
        await b.wait_for(lambda: b.applied, what="alice's message")
        assert b.applied[0]["text"] == "hi bob, from replica 1"
        await b.send_text("b-1", "alice", "hi alice, from replica 2")
        await a.wait_for(lambda: a.applied, what="bob's reply")
        assert a.applied[0]["from"] == "bob"

        await a.send({"send": {"clientMsgId": "a-g1",
                               "to": {"group": "team"}, "text": "team!"}})
        for member in (b, c):
            await member.wait_for(
                lambda m=member: any(x["text"] == "team!" for x in m.applied),
                what="the group message")
        await a.wait_for(lambda: "a-g1" in a.acks, what="the group ack")
        # Exactly once, in order, no echo, no gap the clients had to sync.
        for client in (a, b, c):
            seqs = [int(m["inboxSeq"]) for m in client.applied]
            assert seqs == sorted(set(seqs)), client.name
            assert client.echoes == [] and client.gap_syncs == 0, client.name
            assert client.wire_duplicates == 0, client.name
        for client in (a, b, c):
            await client.close()

    run(scenario())


def test_presence_typing_and_receipts_cross_replicas(cluster):
    async def scenario():
        b = await cluster.client(1, "bob").connect()
        a = await cluster.client(0, "alice").connect()
        online = await next_frame(b, "presence")
        assert online == {"user": "alice", "online": True}
        # Alice, opening after bob, learns he is online from her snapshot.
        assert await next_frame(a, "presence") == {"user": "bob",
                                                   "online": True}

        await a.send({"typing": {"to": {"user": "bob"}}})
        typing = await next_frame(b, "typing")
        assert typing["from"] == "alice"
        assert typing["conversation"] == "d:alice:bob"

        await a.send_text("a-1", "bob", "read me")
        await b.wait_for(lambda: b.applied, what="the message")
        seq = b.applied[0]["seq"]
        await b.send({"read": {"conversation": "d:alice:bob", "seq": seq}})
        receipt = await next_frame(a, "receipt")
        assert receipt == {"conversation": "d:alice:bob", "user": "bob",
                           "seq": seq}

        await a.close()
        offline = await next_frame(b, "presence")
        # proto3's JSON leaves out false.
        assert offline == {"user": "alice"}
        await b.close()

    run(scenario())


def test_operator_calls_on_either_replica_reach_the_whole_cluster(cluster):
    async def scenario():
        a = await cluster.client(0, "alice").connect()
        b = await cluster.client(1, "bob").connect()
        loop = asyncio.get_running_loop()

        # Either replica lists every session of the cluster.
        for admin in cluster.admins:
            listed = await loop.run_in_executor(None, sessions, admin)
            assert {s.user_id for s in listed} == {"alice", "bob"}
            assert {s.session_id for s in listed} == {
                a.welcome["sessionId"], b.welcome["sessionId"]}

        # A broadcast through replica 2 reaches alice on replica 1, once.
        await loop.run_in_executor(None, lambda: cluster.admins[1].call(
            "Broadcast", text="maintenance at noon"))
        for client in (a, b):
            assert (await next_frame(client, "announcement"))["text"] == (
                "maintenance at noon")

        # Kicking bob through replica 1 closes his session on replica 2.
        await loop.run_in_executor(None, lambda: cluster.admins[0].call(
            "Disconnect", user_id="bob", reason="account review",
            reconnect=False))
        await b.wait_for(lambda: b.closed, what="bob's close")
        assert b.closed[0] == 4003
        assert "account review" in b.closed[1]
        listed = await loop.run_in_executor(None, sessions, cluster.admins[0])
        assert {s.user_id for s in listed} == {"alice"}

        # Alice saw no duplicate announcement: a ping round trip is next.
        await a.send({"ping": {"nonce": "after"}})
        assert await next_frame(a, "pong") == {"nonce": "after"}
        assert a.closed is None
        await a.close()

    run(scenario())


def test_block_reaches_every_device_across_replicas(cluster):
    async def scenario():
        phone = await cluster.client(0, "alice").connect()
        laptop = await cluster.client(1, "alice").connect()
        b = await cluster.client(1, "bob").connect()
        await phone.send({"block": {"user": "bob", "blocked": True}})
        # The other device, on the other replica, gets the new list too.
        for device in (phone, laptop):
            assert (await next_frame(device, "blocked"))["users"] == ["bob"]
        # A DM refused by replica 2 for a block made through replica 1.
        await b.send_text("b-1", "alice", "let me in")
        refused = await b.wait_for(lambda: b.errors, what="the refusal")
        assert refused[0]["code"] == "ERROR_CODE_BLOCKED"
        await laptop.send({"block": {"user": "bob", "blocked": False}})
        for device in (phone, laptop):
            assert (await next_frame(device, "blocked")).get("users", []) == []
        await b.send_text("b-2", "alice", "friends again")
        await phone.wait_for(lambda: phone.applied, what="the DM")
        assert phone.applied[0]["text"] == "friends again"
        for c in (phone, laptop, b):
            await c.close()

    run(scenario())


def test_own_read_and_conversation_list_cross_replicas(cluster):
    """alice's phone is served by replica 1, her laptop by replica 2: a read
    on the phone reaches the laptop over NATS with the unread count, and both
    replicas list the same counts from PostgreSQL."""
    async def scenario():
        phone = await cluster.client(0, "alice").connect()
        laptop = await cluster.client(1, "alice").connect()
        b = await cluster.client(1, "bob").connect()
        for i in (1, 2, 3):
            await b.send_text(f"b-{i}", "alice", f"m{i}")
        for device in (phone, laptop):
            await device.wait_for(lambda d=device: len(d.applied) == 3,
                                  what="bob's messages")
        await phone.send({"read": {"conversation": "d:alice:bob",
                                   "seq": "1"}})
        own = await next_frame(laptop, "receipt")
        assert (own["user"], own["seq"], own["unread"]) == ("alice", "1", "2")
        peer = await next_frame(b, "receipt")
        assert (peer["user"], peer["seq"]) == ("alice", "1")
        assert "unread" not in peer
        for device in (phone, laptop):
            await device.send({"listConversations": {}})
            page = await next_frame(device, "conversations")
            dm = page["conversations"][0]
            assert (dm["id"], dm["unread"], dm["readSeq"]) == (
                "d:alice:bob", "2", "1")
            await device.send({"history": {"conversation": "d:alice:bob",
                                           "limit": 2}})
            history = await next_frame(device, "history")
            assert [m["text"] for m in history["messages"]] == ["m2", "m3"]
        for client in (phone, laptop, b):
            await client.close()

    run(scenario())
