"""End to end: operator actions through the Admin API reach clients through
the gateway: Disconnect (close 4003 with the reconnect verdict in the reason),
Broadcast (an announcement on every live session, once), ListSessions (the
gateway's peer address and device)."""

import asyncio

from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_operator_disconnect_closes_4003_with_verdict(stack):
    alice, bob = stack.user("alice"), stack.user("bob")

    async def scenario():
        a = await Client(stack.gateway.address, stack.token(alice),
                         device="phone").connect()
        b = await Client(stack.gateway.address, stack.token(bob)).connect()
        sessions = stack.admin.call("ListSessions", user_id="alice").sessions
        assert len(sessions) == 1
        assert sessions[0].device == "phone"
        assert sessions[0].peer_address.startswith("127.0.0.1:")
        assert sessions[0].session_id == a.welcome["sessionId"]

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: stack.admin.call(
            "Disconnect", user_id="alice", reason="account review",
            reconnect=False))
        await a.wait_for(lambda: a.closed, what="close")
        assert a.closed[0] == 4003
        assert a.closed[1].startswith("no-reconnect:")
        assert "account review" in a.closed[1]
        # Bob is untouched.
        await b.send({"ping": {"nonce": "still here"}})
        assert (await asyncio.wait_for(b.frames.get(), 10)) == {
            "pong": {"nonce": "still here"}}
        await b.close()

    run(scenario())


def test_broadcast_reaches_every_live_session_once(stack):
    users = [stack.user(u) for u in ("alice", "bob", "carol")]

    async def scenario():
        clients = [await Client(stack.gateway.address, stack.token(u),
                                name=u).connect() for u in users]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: stack.admin.call(
            "Broadcast", text="maintenance at noon"))
        for c in clients:
            frame = await asyncio.wait_for(c.frames.get(), 10)
            assert frame["announcement"]["text"] == "maintenance at noon"
        # Nothing else (no duplicate) follows a ping round trip.
        for c in clients:
            await c.send({"ping": {"nonce": "after"}})
            assert (await asyncio.wait_for(c.frames.get(), 10)) == {
                "pong": {"nonce": "after"}}
            await c.close()

    run(scenario())
