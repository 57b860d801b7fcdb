"""A restore from a backup, as a connected client lives through it: the
service's counters rewind to the backup's, and the client (which had seen
more) must end with exactly the restored store's messages and then every new
one, none discarded as a duplicate of something the old data gave it."""

import asyncio
import os
import subprocess

import harness
from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def _restore(data_dir, backup):
    # Without the caller's PARLEY_* variables, which the binary reads as flags.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    done = subprocess.run(
        [harness.bin_path("service/parley-service"), "restore",
         f"--from={backup}", f"--data_dir={data_dir}"],
        capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr


def _backup(svc, path):
    done = subprocess.run(
        [harness.bin_path("tools/parleyctl"), f"--admin_addr={svc.admin_address}",
         f"--admin_key={svc.admin_key}", "backup", path],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_client_connected_through_a_restore_ends_with_the_restored_inbox(
        stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    backup = os.path.join(stack.tmp_path, "backup.db")

    def admin_send(text):
        return stack.admin.call("SendMessage", **{
            "from": alice, "to": {"user": bob}, "text": text})

    async def wait_texts(client, texts):
        await client.wait_for(
            lambda: [m["text"] for m in client.applied][-len(texts):] == texts,
            timeout=30, what=f"{texts}")

    async def scenario():
        b = await Client(stack.gateway.address, stack.token(bob),
                         name="bob").connect()
        generation = b.welcome["storeGeneration"]
        backed_up = [f"kept {i}" for i in range(1, 6)]
        for text in backed_up:
            admin_send(text)
        await wait_texts(b, backed_up)
        kept_ids = [m["messageId"] for m in b.applied]
        _backup(stack.service, backup)
        for i in range(1, 6):
            admin_send(f"lost {i}")
        await wait_texts(b, [f"lost {i}" for i in range(1, 6)])
        assert b.last == 10

        # The operator restores while bob stays connected to the gateway.
        stack.service.stop()
        stack.admin.close()
        _restore(stack.service.data_dir, backup)
        stack.service = stack.procs.add(harness.start_service(
            stack.tmp_path, data_dir=stack.service.data_dir,
            link_address=stack.service.link_address, name="service-restored"))
        stack.admin = harness.AdminClient(stack.service)
        await b.wait_for(lambda: b.closed, timeout=30, what="bob's close")
        assert b.closed[0] == 1012, b.closed
        assert "restored" in b.closed[1]

        # bob reconnects from where he was, in the generation he knew.
        again = await Client(stack.gateway.address, stack.token(bob),
                             inbox_seq=b.last, store_generation=generation,
                             name="bob-again").connect()
        assert again.welcome["storeGeneration"] != generation
        assert int(again.welcome["inboxSeq"]) == 5
        assert again.resets == 1
        await wait_texts(again, backed_up)
        new = [f"new {i}" for i in range(1, 4)]
        for text in new:
            admin_send(text)
        await wait_texts(again, new)
        assert [m["text"] for m in again.applied] == backed_up + new
        assert [m["messageId"] for m in again.applied[:5]] == kept_ids
        assert [int(m["inboxSeq"]) for m in again.applied] == list(range(1, 9))
        assert again.wire_duplicates == 0 and again.gap_syncs == 0
        await again.close()

    run(scenario())
