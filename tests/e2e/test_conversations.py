"""End to end: the conversation list, unread counts kept in step on every
device of a user, and per-conversation history, through a real
parley-service and parley-gateway over WebSocket (tests/e2e/wsclient.py)."""

import asyncio

from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def next_frame(client, kind, predicate=lambda body: True, timeout=10):
    """The next frame of `kind` (e.g. "receipt") that `predicate` accepts;
    frames of other kinds (presence, ...) that arrive first are passed over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(
                f"{client.name}: no {kind} frame; errors={client.errors}")
        try:
            frame = await asyncio.wait_for(client.frames.get(), left)
        except asyncio.TimeoutError:
            continue
        if kind in frame and predicate(frame[kind]):
            return frame[kind]


def count(body, field):
    """A uint64 field of a JSON frame: a string, absent when 0."""
    return int(body.get(field, "0"))


async def list_conversations(client, **fields):
    await client.send({"listConversations": fields})
    return await next_frame(client, "conversations")


async def history(client, conversation, **fields):
    await client.send({"history": dict(fields, conversation=conversation)})
    return await next_frame(client, "history")


def test_unread_counts_agree_on_every_device_and_history_pages(stack):
    for user in ("alice", "bob", "carol"):
        stack.user(user)
    stack.admin.call("CreateGroup", id="team", display_name="Team",
                     members=["alice", "carol"])

    async def scenario():
        gw = stack.gateway.address
        phone = await Client(gw, stack.token("alice"), device="phone",
                             name="alice-phone").connect()
        laptop = await Client(gw, stack.token("alice"), device="laptop",
                              name="alice-laptop").connect()
        bob = await Client(gw, stack.token("bob"), name="bob").connect()
        carol = await Client(gw, stack.token("carol"), name="carol").connect()
        for i in (1, 2, 3):
            await bob.send_text(f"b-{i}", "alice", f"hello {i}")
        for device in (phone, laptop):
            await device.wait_for(lambda d=device: len(d.applied) == 3,
                                  what="bob's three messages")

        # Both devices list the same conversations with the same count.
        for device in (phone, laptop):
            page = await list_conversations(device, limit=10)
            ids = [c["id"] for c in page["conversations"]]
            assert ids == ["d:alice:bob", "g:team"], ids
            dm, team = page["conversations"]
            assert dm["kind"] == "CONVERSATION_KIND_DIRECT"
            assert (dm["title"], dm["peer"]) == ("bob", "bob")
            assert count(dm, "unread") == 3 and count(dm, "headSeq") == 3
            assert dm["lastMessage"]["text"] == "hello 3"
            assert count(dm["lastMessage"], "inboxSeq") == 0
            assert team["kind"] == "CONVERSATION_KIND_GROUP"
            assert team["title"] == "Team" and "lastMessage" not in team
            assert "nextPageToken" not in page
        # Paged one at a time, the same two.
        first = await list_conversations(phone, limit=1)
        assert [c["id"] for c in first["conversations"]] == ["d:alice:bob"]
        second = await list_conversations(
            phone, limit=1, pageToken=first["nextPageToken"])
        assert [c["id"] for c in second["conversations"]] == ["g:team"]
        assert "nextPageToken" not in second

        # A read on the phone reaches the laptop with the new count, and bob
        # as a plain receipt.
        await phone.send({"read": {"conversation": "d:alice:bob",
                                   "seq": "2"}})
        own = await next_frame(laptop, "receipt")
        assert (own["conversation"], own["user"], count(own, "seq")) == (
            "d:alice:bob", "alice", 2)
        assert count(own, "unread") == 1
        peer = await next_frame(bob, "receipt")
        assert (peer["user"], count(peer, "seq")) == ("alice", 2)
        assert "unread" not in peer
        await phone.send({"read": {"conversation": "d:alice:bob",
                                   "seq": "3"}})
        own = await next_frame(laptop, "receipt")
        assert count(own, "seq") == 3 and count(own, "unread") == 0
        page = await list_conversations(laptop)
        assert count(page["conversations"][0], "unread") == 0
        assert count(page["conversations"][0], "readSeq") == 3
        # bob's view: alice's read position is his peer's.
        page = await list_conversations(bob)
        assert count(page["conversations"][0], "peerReadSeq") == 3

        # History pages backwards by seq; its messages are not inbox
        # positions.
        newest = await history(phone, "d:alice:bob", limit=2)
        assert [count(m, "seq") for m in newest["messages"]] == [2, 3]
        assert all("inboxSeq" not in m for m in newest["messages"])
        assert newest["more"] is True
        older = await history(phone, "d:alice:bob", beforeSeq="2", limit=2)
        assert [m["text"] for m in older["messages"]] == ["hello 1"]
        assert "more" not in older
        # The history answers left the inbox alone.
        assert len(phone.applied) == 3 and not phone.held

        # Not a member: refused, naming the conversation; unknown: not found.
        await carol.send({"history": {"conversation": "d:alice:bob"}})
        await carol.send({"history": {"conversation": "g:nope"}})
        await carol.send({"history": {"conversation": "bogus"}})
        await carol.wait_for(lambda: len(carol.errors) == 3,
                             what="three errors")
        codes = [e["code"] for e in carol.errors]
        assert codes == ["ERROR_CODE_PERMISSION_DENIED",
                         "ERROR_CODE_NOT_FOUND",
                         "ERROR_CODE_INVALID_ARGUMENT"], carol.errors
        assert "d:alice:bob" in carol.errors[0]["message"]
        assert "g:nope" in carol.errors[1]["message"]
        assert not phone.errors and not laptop.errors and not bob.errors

        for c in (phone, laptop, bob, carol):
            await c.close()

    run(scenario())

    # Operators see the same list.
    listed = stack.admin.call("ListConversations", user_id="alice")
    assert [c.id for c in listed.conversations] == ["d:alice:bob", "g:team"]
    assert listed.conversations[0].unread == 0
    assert listed.conversations[0].read_seq == 3


def test_answers_and_refusals_carry_the_request_id(stack):
    """Several requests in flight at once: each answer, and each refusal by
    the service or the gateway, names the requestId it answers."""
    for user in ("alice", "bob"):
        stack.user(user)
    stack.admin.call("CreateGroup", id="team", display_name="Team",
                     members=["bob"])

    async def scenario():
        a = await Client(stack.gateway.address, stack.token("alice"),
                         name="alice").connect()
        await a.send({"listConversations": {}, "requestId": "r-list"})
        await a.send({"history": {"conversation": "g:team"},
                      "requestId": "r-denied"})
        await a.send({"history": {}, "requestId": "r-invalid"})
        listed = await next_frame(a, "conversations")
        assert listed.get("conversations", []) == []
        await a.wait_for(lambda: len(a.error_frames) == 2, what="2 refusals")
        by_id = {f["requestId"]: f["error"]["code"] for f in a.error_frames}
        assert by_id == {"r-denied": "ERROR_CODE_PERMISSION_DENIED",
                         "r-invalid": "ERROR_CODE_INVALID_ARGUMENT"}
        await a.close()

    run(scenario())
