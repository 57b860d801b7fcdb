"""End to end: user-managed groups through a real parley-gateway and
parley-service (client.proto's CreateGroup, UpdateGroup, GetGroup and the
group events they store), plus the admin API's changes of the same group."""

import asyncio

from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def events(client, event_type):
    """The group events of `event_type` (a GroupEventType name without its
    prefix) the client applied."""
    return [m for m in client.applied
            if m.get("kind") == "MESSAGE_KIND_GROUP_EVENT"
            and m["groupEvent"]["type"] == "GROUP_EVENT_TYPE_" + event_type]


def error_for(client, client_msg_id):
    return next((e for e in client.errors
                 if e.get("clientMsgId") == client_msg_id), None)


async def update(client, client_msg_id, group, **change):
    client.sent_ids.add(client_msg_id)
    await client.send({"updateGroup": dict(clientMsgId=client_msg_id,
                                            group=group, **change)})


async def next_frame(client, key):
    while True:
        frame = await asyncio.wait_for(client.frames.get(), 10)
        if key in frame:
            return frame[key]


def test_members_manage_a_group_and_see_its_events(stack):
    for user in ("alice", "bob", "carol", "dave"):
        stack.user(user)

    async def scenario():
        a, b, c, d = [await Client(stack.gateway.address, stack.token(u),
                                   name=u).connect()
                      for u in ("alice", "bob", "carol", "dave")]

        # alice creates a group with bob: the Ack names its conversation.
        a.sent_ids.add("cg-1")
        await a.send({"createGroup": {"clientMsgId": "cg-1", "title": "Trip",
                                      "members": ["bob"]}})
        ack = await a.wait_for(lambda: a.acks.get("cg-1"), what="create ack")
        assert ack["conversation"].startswith("g:")
        group = ack["conversation"][2:]
        created = (await b.wait_for(lambda: events(b, "CREATED"),
                                    what="bob's created event"))[0]
        assert created["groupEvent"]["actor"] == "alice"
        assert created["groupEvent"]["title"] == "Trip"
        assert created["groupEvent"]["users"] == ["alice", "bob"]
        assert created["to"] == {"group": group}

        # alice adds carol, who sees the event and can send at once.
        await update(a, "add-carol", group, addMembers={"users": ["carol"]})
        added = (await c.wait_for(lambda: events(c, "MEMBERS_ADDED"),
                                  what="carol's added event"))[0]
        assert added["groupEvent"]["users"] == ["carol"]
        assert added["conversation"] == ack["conversation"]
        await c.send({"send": {"clientMsgId": "c-1", "to": {"group": group},
                               "text": "hi all"}})
        await c.wait_for(lambda: c.acks.get("c-1"), what="carol's send ack")
        for peer in (a, b):
            await peer.wait_for(
                lambda p=peer: any(m.get("text") == "hi all"
                                   for m in p.applied),
                what=f"carol's message at {peer.name}")

        # A plain member may not add anyone: refused, nothing stored.
        head = b.last
        await update(b, "b-add", group, addMembers={"users": ["dave"]})
        refused = await b.wait_for(lambda: error_for(b, "b-add"),
                                   what="bob's refusal")
        assert refused["code"] == "ERROR_CODE_PERMISSION_DENIED"
        assert "only the owner and admins" in refused["message"]
        # The owner may not leave while others remain.
        await update(a, "a-leave", group, leave={})
        refused = await a.wait_for(lambda: error_for(a, "a-leave"),
                                   what="alice's refused leave")
        assert refused["code"] == "ERROR_CODE_FAILED_PRECONDITION"

        # bob is removed: he gets the event, then may not send.
        await update(a, "rm-bob", group, removeMembers={"users": ["bob"]})
        removed = (await b.wait_for(lambda: events(b, "MEMBERS_REMOVED"),
                                    what="bob's removal"))[0]
        assert removed["groupEvent"]["users"] == ["bob"]
        assert int(removed["inboxSeq"]) == head + 1  # Nothing stored between.
        await b.send({"send": {"clientMsgId": "b-2", "to": {"group": group},
                               "text": "still here?"}})
        refused = await b.wait_for(lambda: error_for(b, "b-2"),
                                   what="bob's refused send")
        assert refused["code"] == "ERROR_CODE_PERMISSION_DENIED"

        # Rename, then carol leaves.
        await update(a, "rename", group, rename="Trip 2026")
        renamed = (await c.wait_for(lambda: events(c, "RENAMED"),
                                    what="carol's renamed event"))[0]
        assert renamed["groupEvent"]["title"] == "Trip 2026"
        await update(c, "c-leave", group, leave={})
        left = (await a.wait_for(lambda: events(a, "MEMBER_LEFT"),
                                 what="alice sees carol leave"))[0]
        assert left["groupEvent"] == {"type": "GROUP_EVENT_TYPE_MEMBER_LEFT",
                                      "actor": "carol", "users": ["carol"]}
        await c.wait_for(lambda: c.acks.get("c-leave"), what="leave ack")

        # GetGroup: the group with its roles, to members only.
        await a.send({"getGroup": {"group": group}})
        info = await next_frame(a, "group")
        assert info["id"] == group
        assert info["title"] == "Trip 2026"
        assert info["members"] == [{"user": "alice",
                                    "role": "GROUP_ROLE_OWNER"}]
        await c.send({"getGroup": {"group": group}})
        await c.wait_for(
            lambda: any(e["code"] == "ERROR_CODE_PERMISSION_DENIED"
                        for e in c.errors), what="carol's refused getGroup")

        # The operator adds dave through the admin API: an event without an
        # actor, delivered live.
        reply = stack.admin.call("AddMembers", group_id=group,
                                 user_ids=["dave"])
        assert list(reply.members) == ["alice", "dave"]
        assert dict(reply.roles) == {"alice": 2}  # GROUP_ROLE_OWNER
        joined = (await d.wait_for(lambda: events(d, "MEMBERS_ADDED"),
                                   what="dave's added event"))[0]
        assert joined.get("from", "") == ""
        assert joined["groupEvent"].get("actor", "") == ""
        # alice's own changes came back as Acks; this one as a message.
        await a.wait_for(lambda: events(a, "MEMBERS_ADDED"),
                         what="alice sees the operator's add")
        assert events(a, "MEMBERS_ADDED")[0]["groupEvent"]["users"] == [
            "dave"]

        for client in (a, b, c, d):
            assert not client.echoes, client.name
            await client.close()

    run(scenario())


def test_a_repeated_create_answers_with_the_same_group(stack):
    stack.user("alice")

    async def scenario():
        a = await Client(stack.gateway.address, stack.token("alice"),
                         name="alice").connect()
        frame = {"createGroup": {"clientMsgId": "cg", "title": "Solo"}}
        a.sent_ids.add("cg")
        await a.send(frame)
        first = await a.wait_for(lambda: a.acks.get("cg"), what="ack")
        del a.acks["cg"]
        await a.send(frame)
        again = await a.wait_for(lambda: a.acks.get("cg"), what="second ack")
        assert again["conversation"] == first["conversation"]
        assert again["messageId"] == first["messageId"]
        reply = stack.admin.call("ListGroups")
        assert [g.id for g in reply.groups] == [first["conversation"][2:]]
        await a.close()

    run(scenario())
