"""End to end: blocking (client.proto's Block, ListBlocked and BlockList)
through a real parley-gateway and parley-service, over WebSocket."""

import asyncio

from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def others(c):
    """Every frame the client got that wsclient does not sort itself
    (blocked, presence, typing, ...), in order."""
    if not hasattr(c, "seen"):
        c.seen = []
    while not c.frames.empty():
        c.seen.append(c.frames.get_nowait())
    return c.seen


async def wait_frame(c, predicate, what):
    """The first frame matching `predicate`, once it has arrived."""
    found = await c.wait_for(
        lambda: [f for f in others(c) if predicate(f)], what=what)
    return found[0]


def block_lists(c):
    return [f["blocked"].get("users", []) for f in others(c) if "blocked" in f]


def presence_of(c, user):
    return [f["presence"].get("online", False) for f in others(c)
            if "presence" in f and f["presence"]["user"] == user]


def block(user, blocked=True):
    return {"block": {"user": user, "blocked": blocked}}


def test_block_refuses_dms_hides_presence_and_typing_until_unblocked(stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    stack.admin.call("CreateGroup", id="team", members=[alice, bob])

    async def scenario():
        phone = await Client(stack.gateway.address, stack.token(alice),
                             device="phone").connect()
        laptop = await Client(stack.gateway.address, stack.token(alice),
                              device="laptop").connect()
        b = await Client(stack.gateway.address, stack.token(bob),
                         name="bob").connect()
        # Group mates: each sees the other online.
        await wait_frame(phone, lambda f: presence_of(phone, "bob"),
                         "bob online")

        await phone.send(block("bob"))
        for device in (phone, laptop):
            await device.wait_for(lambda d=device: block_lists(d),
                                  what="BlockList on " + device.name)
            assert block_lists(device) == [["bob"]]
        # Each appears offline to the other.
        await phone.wait_for(lambda: presence_of(phone, "bob") == [True, False],
                             what="bob shown offline")
        await b.wait_for(lambda: presence_of(b, "alice")[-1:] == [False],
                         what="alice shown offline")
        assert stack.admin.call("ListBlocks", id="alice").users == ["bob"]

        # DMs are refused both ways, saying which way; nothing is stored.
        await b.send_text("b-1", "alice", "let me in")
        await laptop.send_text("l-1", "bob", "go away")
        refused = await b.wait_for(lambda: b.errors, what="bob's refusal")
        assert refused[0]["code"] == "ERROR_CODE_BLOCKED"
        assert refused[0]["clientMsgId"] == "b-1"
        assert refused[0]["message"] == (
            'user "alice" does not accept your messages')
        refused = await laptop.wait_for(lambda: laptop.errors,
                                        what="alice's refusal")
        assert refused[0]["code"] == "ERROR_CODE_BLOCKED"
        assert 'you blocked "bob"' in refused[0]["message"]
        history = stack.admin.call("GetHistory", conversation="d:alice:bob")
        assert list(history.messages) == []

        # Direct typing is dropped; group typing and messages pass.
        await b.send({"typing": {"to": {"user": "alice"}}})
        await b.send({"typing": {"to": {"group": "team"}}})
        await b.send({"send": {"clientMsgId": "b-2", "to": {"group": "team"},
                               "text": "in the group"}})
        await phone.wait_for(lambda: phone.applied, what="group message")
        assert [m["text"] for m in phone.applied] == ["in the group"]
        typing = [f["typing"] for f in others(phone) if "typing" in f]
        assert typing == [{"from": "bob", "conversation": "g:team"}]

        # Bad blocks are errors naming the problem.
        await phone.send(block("alice"))
        await phone.send(block("nobody"))
        await phone.wait_for(lambda: len(phone.errors) == 2, what="errors")
        assert [e["code"] for e in phone.errors] == [
            "ERROR_CODE_INVALID_ARGUMENT", "ERROR_CODE_NOT_FOUND"]

        # Unblocked from the other device: both devices get the new list,
        # presence comes back both ways, and DMs flow.
        await laptop.send(block("bob", blocked=False))
        for device in (phone, laptop):
            await device.wait_for(lambda d=device: block_lists(d)[-1:] == [[]],
                                  what="empty BlockList on " + device.name)
        await phone.wait_for(
            lambda: presence_of(phone, "bob") == [True, False, True],
            what="bob shown online again")
        await b.wait_for(lambda: presence_of(b, "alice")[-1:] == [True],
                         what="alice shown online again")
        await b.send({"listBlocked": {}})
        await b.wait_for(lambda: block_lists(b) == [[]], what="bob's list")
        await b.send_text("b-3", "alice", "friends again")
        await phone.wait_for(
            lambda: any(m["text"] == "friends again" for m in phone.applied),
            what="the DM after the unblock")
        assert len(b.errors) == 1
        for c in (phone, laptop, b):
            await c.close()

    run(scenario())
