"""End to end: edit and delete through a real parley-gateway and
parley-service. Each edit or delete is a message of its own in every
member's inbox (live, or replayed to a device that was offline, in order and
once), and the message it changes is served changed: history shows the edit
or the tombstone, never the deleted text. Operators delete through the admin
API."""

import asyncio

import grpc
import pytest

from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def kind(m):
    return m.get("kind", "MESSAGE_KIND_TEXT")


def test_edit_and_delete_reach_live_and_offline_devices_once_in_order(stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    gw = stack.gateway.address

    async def scenario():
        a = await Client(gw, stack.token(alice), name="alice").connect()
        b = await Client(gw, stack.token(bob), device="phone",
                         name="bob-phone").connect()
        tablet = await Client(gw, stack.token(bob), device="tablet",
                              name="bob-tablet").connect()

        await a.send_text("a-1", "bob", "helo bob")
        sent = await a.wait_for(lambda: a.acks.get("a-1"), what="ack a-1")
        seq = sent["seq"]
        await tablet.wait_for(lambda: tablet.applied, what="the text")
        tablet_last = tablet.last
        await tablet.close()  # Offline while the message changes.

        await a.send({"edit": {"clientMsgId": "e-1",
                               "conversation": "d:alice:bob", "seq": seq,
                               "text": "hello bob"}})
        edit_ack = await a.wait_for(lambda: a.acks.get("e-1"), what="ack e-1")
        await a.send({"delete": {"clientMsgId": "x-1",
                                 "conversation": "d:alice:bob", "seq": seq}})
        delete_ack = await a.wait_for(lambda: a.acks.get("x-1"),
                                      what="ack x-1")
        # Each is a message of its own: the conversation's next seqs, and the
        # sender's next inbox_seqs (its Acks stand for them).
        assert int(edit_ack["seq"]) == int(seq) + 1
        assert int(delete_ack["seq"]) == int(seq) + 2
        assert int(delete_ack["inboxSeq"]) == int(edit_ack["inboxSeq"]) + 1
        assert not a.echoes

        # bob, live: the text, the edit with its text, the delete.
        await b.wait_for(lambda: len(b.applied) >= 3, what="bob's events")
        assert [kind(m) for m in b.applied] == [
            "MESSAGE_KIND_TEXT", "MESSAGE_KIND_EDIT", "MESSAGE_KIND_DELETE"]
        edit, delete = b.applied[1], b.applied[2]
        assert edit["text"] == "hello bob"
        assert edit["targetSeq"] == seq and delete["targetSeq"] == seq
        assert edit["from"] == delete["from"] == "alice"
        assert "text" not in delete
        assert [int(m["inboxSeq"]) for m in b.applied] == [1, 2, 3]

        # The tablet comes back: both events, once each, in order; the
        # edit's text is gone with the delete.
        back = await Client(gw, stack.token(bob), device="tablet",
                            inbox_seq=tablet_last,
                            name="bob-tablet-again").connect()
        await back.wait_for(lambda: len(back.applied) >= 2, what="replay")
        assert [kind(m) for m in back.applied] == [
            "MESSAGE_KIND_EDIT", "MESSAGE_KIND_DELETE"]
        assert [m["messageId"] for m in back.applied] == [
            edit_ack["messageId"], delete_ack["messageId"]]
        assert "text" not in back.applied[0]
        assert back.wire_duplicates == 0

        # A new phone that syncs the whole inbox: the tombstone first.
        fresh = await Client(gw, stack.token(bob), device="new", inbox_seq=0,
                             name="bob-new").connect()
        await fresh.wait_for(lambda: len(fresh.applied) >= 3,
                             what="full replay")
        original = fresh.applied[0]
        assert original["deleted"] is True
        assert "text" not in original and "editedAt" in original
        assert all("helo" not in m.get("text", "") and
                   "hello" not in m.get("text", "") for m in fresh.applied)

        # Refusals are errors naming the problem, with the clientMsgId.
        await b.send({"edit": {"clientMsgId": "b-e1",
                               "conversation": "d:alice:bob", "seq": seq,
                               "text": "not mine"}})
        await a.send({"edit": {"clientMsgId": "a-e2",
                               "conversation": "d:alice:bob", "seq": seq,
                               "text": "again"}})
        await a.send({"delete": {"clientMsgId": "a-x2",
                                 "conversation": "d:alice:bob", "seq": "0"}})
        await b.wait_for(lambda: b.errors, what="bob's error")
        await a.wait_for(lambda: len(a.errors) >= 2, what="alice's errors")
        errors = {e["clientMsgId"]: e for e in a.errors + b.errors}
        assert errors["b-e1"]["code"] == "ERROR_CODE_PERMISSION_DENIED"
        assert 'sent by "alice"' in errors["b-e1"]["message"]
        assert errors["a-e2"]["code"] == "ERROR_CODE_FAILED_PRECONDITION"
        assert "already deleted" in errors["a-e2"]["message"]
        assert errors["a-x2"]["code"] == "ERROR_CODE_INVALID_ARGUMENT"

        for c in (a, b, back, fresh):
            await c.close()

    run(scenario())

    history = stack.admin.call("GetHistory", conversation="d:alice:bob")
    assert [m.seq for m in history.messages] == [1, 2, 3]
    tombstone = history.messages[0]
    assert tombstone.deleted and tombstone.text == ""
    assert tombstone.HasField("edited_at")
    assert history.messages[1].text == ""  # The edit's text, scrubbed.
    pb = stack.admin.pb.client
    assert [m.kind for m in history.messages] == [
        pb.MESSAGE_KIND_TEXT, pb.MESSAGE_KIND_EDIT, pb.MESSAGE_KIND_DELETE]


def test_an_edit_shows_in_history_with_its_time(stack):
    alice, bob = stack.user("alice"), stack.user("bob")

    async def scenario():
        a = await Client(stack.gateway.address, stack.token(alice),
                         name="alice").connect()
        await a.send_text("a-1", "bob", "first")
        await a.wait_for(lambda: a.acks.get("a-1"), what="ack")
        await a.send({"edit": {"clientMsgId": "e-1",
                               "conversation": "d:alice:bob", "seq": "1",
                               "text": "second"}})
        await a.wait_for(lambda: a.acks.get("e-1"), what="edit ack")
        await a.close()

    run(scenario())
    first = stack.admin.call("GetHistory",
                             conversation="d:alice:bob").messages[0]
    assert first.text == "second" and not first.deleted
    assert first.edited_at.seconds >= first.sent_at.seconds > 0


def test_operator_deletes_any_message_for_every_member(stack):
    alice, bob, carol = (stack.user(u) for u in ("alice", "bob", "carol"))
    # The group's creation is its first message (seq 1); the spam is seq 2.
    stack.admin.call("CreateGroup", id="team", members=[alice, bob, carol])
    gw = stack.gateway.address

    async def scenario():
        a = await Client(gw, stack.token(alice), name="alice").connect()
        b = await Client(gw, stack.token(bob), name="bob").connect()
        await b.send({"send": {"clientMsgId": "b-1", "to": {"group": "team"},
                               "text": "buy cheap pills"}})
        await b.wait_for(lambda: b.acks.get("b-1"), what="ack b-1")
        await a.wait_for(lambda: a.applied, what="the spam")

        # The admin call blocks: run it off the event loop.
        ack = await asyncio.get_running_loop().run_in_executor(
            None, lambda: stack.admin.call(
                "DeleteMessage", conversation="g:team", seq=2, reason="spam"))
        assert ack.seq == 3 and ack.inbox_seq == 0
        for c in (a, b):
            await c.wait_for(
                lambda c=c: any(kind(m) == "MESSAGE_KIND_DELETE"
                                for m in c.applied),
                what=f"the delete event on {c.name}")
            delete = [m for m in c.applied
                      if kind(m) == "MESSAGE_KIND_DELETE"][0]
            assert "from" not in delete  # The operator's: an empty sender.
            assert delete["targetSeq"] == "2"
            assert delete["to"] == {"group": "team"}
        await a.close()
        await b.close()

        # carol, offline throughout, learns it on her first sync.
        c = await Client(gw, stack.token(carol), inbox_seq=0,
                         name="carol").connect()
        await c.wait_for(lambda: len(c.applied) >= 3, what="carol's replay")
        assert kind(c.applied[0]) == "MESSAGE_KIND_GROUP_EVENT"
        assert c.applied[1]["deleted"] is True
        assert kind(c.applied[2]) == "MESSAGE_KIND_DELETE"
        await c.close()

    run(scenario())
    history = stack.admin.call("GetHistory", conversation="g:team")
    assert history.messages[1].deleted
    assert history.messages[2].kind == stack.admin.pb.client.MESSAGE_KIND_DELETE
    assert "pills" not in str(history)

    # Again: the first delete's answer. Nothing to delete: NOT_FOUND.
    again = stack.admin.call("DeleteMessage", conversation="g:team", seq=2)
    assert again.message_id == history.messages[2].message_id
    with pytest.raises(grpc.RpcError) as refused:
        stack.admin.call("DeleteMessage", conversation="g:team", seq=9)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "message 9" in refused.value.details()
