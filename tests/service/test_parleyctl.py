"""parleyctl as an operator runs it: help exits 0, a typo gets a suggestion,
a missing admin key is named before any call, flags may follow the command,
history shows escaped text and zoned times, `send --system` needs no user
created first, and a token carries the device it was asked for.

Run: /usr/bin/python3 -m pytest tests/service/test_parleyctl.py (after `bazel
build //service:parley-service //tools:parleyctl`).
"""

import base64
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import harness  # noqa: E402


def _parleyctl(*args, svc=None):
    # Without the caller's PARLEY_* variables, which parleyctl reads.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    flags = ([f"--admin_addr={svc.admin_address}",
              f"--admin_key={svc.admin_key}"] if svc else [])
    return subprocess.run([harness.bin_path("tools/parleyctl"), *flags, *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_help_in_every_spelling_prints_usage_and_exits_0():
    for args in (["--help"], ["-h"], ["help"]):
        done = _parleyctl(*args)
        assert done.returncode == 0, (args, done.stderr)
        assert done.stdout.startswith("usage: parleyctl "), args
        assert "  users create ID" in done.stdout, args
    done = _parleyctl("users", "create", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: parleyctl users create ID"), done.stdout


def test_unknown_command_suggests_the_nearest_and_exits_2():
    done = _parleyctl("tokens", "alice")
    assert done.returncode == 2
    assert 'did you mean "token"?' in done.stderr, done.stderr


def test_missing_admin_key_is_named_without_calling_the_service():
    # Nothing listens on port 1: a call would exit 3 (unreachable).
    done = _parleyctl("--admin_addr=127.0.0.1:1", "users", "list")
    assert done.returncode == 4, done.stderr
    assert "no admin key" in done.stderr, done.stderr
    assert "wrong" not in done.stderr, done.stderr


def test_operator_commands_against_a_service(tmp_path, procs):
    svc = procs.add(harness.start_service(str(tmp_path)))

    # Flags after the command.
    done = _parleyctl("users", "create", "alice", "--json", svc=svc)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["id"] == "alice"
    done = _parleyctl("users", "list", "--json", svc=svc)
    assert done.returncode == 0, done.stderr
    assert [u["id"] for u in json.loads(done.stdout)["users"]] == ["alice"]

    # As the system, with no user created first; the text has a newline and
    # an escape sequence.
    done = _parleyctl("send", "--system", "--to", "alice",
                      "line one\nline two\x1b[2J", svc=svc)
    assert done.returncode == 0, done.stderr
    done = _parleyctl("history", "d:alice:system", svc=svc)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["SEQ", "FROM", "SENT", "TEXT"]
    assert re.fullmatch(r"1 +system +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +"
                        r"line one\\nline two\\x1b\[2J", row), row

    # Blocks (made by clients; tests/e2e/test_blocking.py lists some).
    done = _parleyctl("blocks", "alice", svc=svc)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "BLOCKED\n"
    done = _parleyctl("blocks", "nobody", svc=svc)
    assert done.returncode == 5 and "nobody" in done.stderr, done

    done = _parleyctl("token", "alice", "--device", "laptop", svc=svc)
    assert done.returncode == 0, done.stderr
    payload = done.stdout.strip().split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims = json.loads(base64.urlsafe_b64decode(padded))
    assert claims["sub"] == "alice" and claims["dev"] == "laptop", claims
