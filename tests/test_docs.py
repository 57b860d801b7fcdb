"""The guides stay true: the configuration reference matches the binaries,
and the token recipes in docs/operators.md mint tokens the real service
accepts."""

import asyncio
import json
import os
import re
import subprocess

import harness

DOCS = os.path.join(harness.REPO, "docs")


def _bin_dir():
    return os.path.dirname(os.path.dirname(harness.bin_path("tools/parleyctl")))


def test_configuration_reference_is_current():
    out = subprocess.run(
        ["/usr/bin/python3", os.path.join(harness.REPO, "tools",
                                          "gen_config_doc.py"), _bin_dir()],
        check=True, text=True, stdout=subprocess.PIPE).stdout
    with open(os.path.join(DOCS, "configuration.md"), encoding="utf-8") as f:
        committed = f.read()
    assert committed == out, (
        "docs/configuration.md is stale; run "
        "tools/gen_config_doc.py $(bazel info bazel-bin) docs/configuration.md")


def _code_block_after(text, marker, lang):
    start = text.index(marker)
    m = re.compile(r"```" + lang + r"\n(.*?)```", re.S).search(text, start)
    return m.group(1)


async def _welcome(address, token):
    import websockets  # Debian's python3-websockets.
    async with websockets.connect(f"ws://{address}/?token={token}") as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 10))


def test_token_recipes_in_the_operators_guide_are_accepted(tmp_path, procs):
    with open(os.path.join(DOCS, "operators.md"), encoding="utf-8") as f:
        guide = f.read()
    secret = "recipe-secret"
    svc = procs.add(harness.start_service(str(tmp_path), token_secret=secret))
    gw = procs.add(harness.start_gateway(str(tmp_path), svc.link_address))
    admin = harness.AdminClient(svc)
    admin.call("CreateUser", id="alice")
    admin.close()

    shell = _code_block_after(guide, "With nothing but a shell", "sh")
    token = subprocess.run(["bash", "-c", shell], check=True, text=True,
                           stdout=subprocess.PIPE,
                           env=dict(os.environ, PARLEY_TOKEN_SECRET=secret)
                           ).stdout.strip()
    frame = asyncio.run(_welcome(gw.address, token))
    assert frame["welcome"]["userId"] == "alice", frame

    namespace = {}
    exec(_code_block_after(guide, "In Python:", "python"), namespace)
    token = namespace["parley_token"](secret, "alice", device="recipe")
    frame = asyncio.run(_welcome(gw.address, token))
    assert frame["welcome"]["userId"] == "alice", frame
