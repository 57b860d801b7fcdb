"""End to end: the tokens real deployments issue (issue 18).

* Key rotation with a keys file, following docs/operators.md's steps: a new
  key is added (read again without a restart), the service restarted to sign
  with it, the old key removed; tokens of the old key work until then and are
  closed 4001 afterwards with a reason that says so.
* An identity provider's RS256 and ES256 tokens, checked against a JWKS file
  of public keys made by the openssl command line, with issuer and audience
  checks.
"""

import asyncio
import base64
import json
import os
import subprocess
import time

import grpc
import pytest

import harness
from wsclient import Client


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def write_atomically(path, text):
    with open(path + ".new", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".new", path)


async def connect(gateway, token):
    """Opens a session; returns the client, or (code, reason) if refused."""
    client = Client(gateway.address, token)
    try:
        await client.connect()
    except AssertionError:
        await client.wait_for(lambda: client.closed, what="the close")
        return client.closed
    return client


def start(tmp_path, procs, extra, name="service",
          link_address="127.0.0.1:0"):
    """parley-service with no --token_secret: the keys are in `extra`."""
    return procs.add(harness.start_service(
        str(tmp_path), data_dir=str(tmp_path / "data"), name=name,
        token_secret="", link_address=link_address,
        extra=["--token_reload_interval=100ms", *extra]))


def test_rotating_keys_through_the_keys_file(tmp_path, procs):
    keys = str(tmp_path / "token-keys")
    write_atomically(keys, "# kid secret\n2026-11 old-secret\n")
    extra = [f"--token_keys_file={keys}", "--token_signing_kid=2026-11"]
    service = start(tmp_path, procs, extra)
    gateway = procs.add(harness.start_gateway(str(tmp_path), service))
    admin = harness.AdminClient(service)
    admin.call("CreateUser", id="alice")
    old = admin.call("IssueToken", user_id="alice").token
    header = json.loads(base64.urlsafe_b64decode(old.split(".")[0] + "=="))
    assert header["kid"] == "2026-11"

    # Step 1: the new key joins the file; the service reads it again.
    mark = len(service.lines)
    write_atomically(keys, "2026-11 old-secret\n2026-12 new-secret\n")
    service.wait_for_event("service.token_keys_reloaded", start=mark)
    new = harness.mint_token("new-secret", "alice", kid="2026-12")

    async def both_work():
        for token in (old, new):
            client = await connect(gateway, token)
            assert isinstance(client, Client), client
            await client.close()
    run(both_work())

    # Step 2: replicas restart one by one signing with the new key.
    admin.close()
    link = service.link_address
    service.stop()
    mark = len(gateway.lines)
    service = start(tmp_path, procs, [f"--token_keys_file={keys}",
                                      "--token_signing_kid=2026-12"],
                    name="service-2", link_address=link)
    gateway.wait_for_event("gateway.upstream_up", start=mark)
    admin = harness.AdminClient(service)
    signed = admin.call("IssueToken", user_id="alice").token
    assert json.loads(base64.urlsafe_b64decode(
        signed.split(".")[0] + "=="))["kid"] == "2026-12"
    admin.close()

    # Step 3: after the old tokens' lifetime, the old key goes.
    mark = len(service.lines)
    write_atomically(keys, "2026-12 new-secret\n")
    service.wait_for_event("service.token_keys_reloaded", start=mark)

    async def old_refused():
        closed = await connect(gateway, old)
        assert closed[0] == 4001, closed
        assert "2026-11" in closed[1] and "rotated out" in closed[1], closed
        client = await connect(gateway, signed)
        assert isinstance(client, Client), client
        await client.close()
    run(old_refused())

    # A file that would drop the signing key is refused; nothing changes.
    mark = len(service.lines)
    write_atomically(keys, "2099-01 other\n")
    refused = service.wait_for_event("service.token_keys_refused", start=mark)
    assert "2026-12" in refused["reason"]
    run(asyncio.wait_for(_still_works(gateway, signed), 30))


async def _still_works(gateway, token):
    client = await connect(gateway, token)
    assert isinstance(client, Client), client
    await client.close()


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, check=True,
                          capture_output=True).stdout


class IdpKey:
    """A key pair made by the openssl command line, as an identity provider
    would hold it; Sign() makes a JWT with it."""

    def __init__(self, tmp_path, kid, kind):
        self.kid = kid
        self.path = str(tmp_path / f"{kid}.pem")
        if kind == "RS256":
            openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", self.path)
        else:
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-out", self.path)
        self.alg = kind

    def jwk(self):
        if self.alg == "RS256":
            modulus = openssl("rsa", "-in", self.path, "-noout", "-modulus")
            n = bytes.fromhex(modulus.decode().strip().split("=", 1)[1])
            return {"kty": "RSA", "kid": self.kid, "use": "sig",
                    "alg": "RS256", "n": b64url(n), "e": "AQAB"}
        der = openssl("pkey", "-in", self.path, "-pubout", "-outform", "DER")
        point = der[-65:]  # 04 || x || y at the end of the SPKI.
        assert point[0] == 4
        return {"kty": "EC", "crv": "P-256", "kid": self.kid,
                "x": b64url(point[1:33]), "y": b64url(point[33:])}

    def sign(self, claims):
        header = b64url(json.dumps({"alg": self.alg, "typ": "JWT",
                                    "kid": self.kid}).encode())
        body = b64url(json.dumps(claims).encode())
        sig = openssl("dgst", "-sha256", "-sign", self.path,
                      data=f"{header}.{body}".encode())
        if self.alg == "ES256":
            sig = _ecdsa_raw(sig)
        return f"{header}.{body}.{b64url(sig)}"


def _ecdsa_raw(der):
    """DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) as JWS's r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        length = der[i + 1]
        value = der[i + 2:i + 2 + length].lstrip(b"\0")
        out += value.rjust(32, b"\0")
        i += 2 + length
    return out


def test_identity_provider_tokens_from_a_jwks_file(tmp_path, procs):
    rsa = IdpKey(tmp_path, "rsa-2026", "RS256")
    ec = IdpKey(tmp_path, "ec-2026", "ES256")
    jwks = str(tmp_path / "jwks.json")
    write_atomically(jwks, json.dumps({"keys": [rsa.jwk(), ec.jwk()]}))
    issuer = "https://idp.example/realms/chat"
    service = start(tmp_path, procs, [f"--token_jwks_file={jwks}",
                                      f"--token_issuer={issuer}",
                                      "--token_audience=parley"])
    gateway = procs.add(harness.start_gateway(str(tmp_path), service))
    admin = harness.AdminClient(service)
    admin.call("CreateUser", id="alice")
    # Tokens come from the identity provider, not from IssueToken.
    with pytest.raises(grpc.RpcError) as refused:
        admin.call("IssueToken", user_id="alice")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    admin.close()

    now = int(time.time())
    claims = {"sub": "alice", "iss": issuer, "aud": ["account", "parley"],
              "exp": now + 600, "iat": now}

    async def scenario():
        for key in (rsa, ec):
            client = await connect(gateway, key.sign(claims))
            assert isinstance(client, Client), (key.alg, client)
            assert client.welcome["userId"] == "alice"
            await client.close()
        closed = await connect(gateway, ec.sign(dict(claims, aud="billing")))
        assert closed[0] == 4001 and "parley" in closed[1], closed
        closed = await connect(gateway, rsa.sign(dict(
            claims, iss="https://evil.example")))
        assert closed[0] == 4001 and "evil.example" in closed[1], closed
        # A key the file does not hold.
        other = IdpKey(tmp_path, "rsa-other", "RS256")
        closed = await connect(gateway, other.sign(claims))
        assert closed[0] == 4001 and "rsa-other" in closed[1], closed
        # ... until the provider publishes it: the file is read again.
        mark = len(service.lines)
        write_atomically(jwks, json.dumps(
            {"keys": [rsa.jwk(), ec.jwk(), other.jwk()]}))
        await asyncio.to_thread(service.wait_for_event,
                                "service.token_keys_reloaded", start=mark)
        client = await connect(gateway, other.sign(claims))
        assert isinstance(client, Client), client
        await client.close()
    run(scenario())


def test_kick_with_revoke_tokens_refuses_the_tokens_issued_before(
        tmp_path, procs):
    service = procs.add(harness.start_service(str(tmp_path)))
    gateway = procs.add(harness.start_gateway(str(tmp_path), service))
    admin = harness.AdminClient(service)
    admin.call("CreateUser", id="alice")
    admin.call("CreateUser", id="bob")
    old = admin.call("IssueToken", user_id="alice").token
    bob = admin.call("IssueToken", user_id="bob").token
    admin.close()

    async def scenario():
        a = await connect(gateway, old)
        assert isinstance(a, Client), a
        out = subprocess.run(
            [harness.bin_path("tools/parleyctl"),
             f"--admin_addr={service.admin_address}",
             f"--admin_key={service.admin_key}", "kick", "alice",
             "--reason", "password changed", "--revoke-tokens"],
            capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        assert "earlier tokens revoked" in out.stdout
        await a.wait_for(lambda: a.closed, what="the kick")
        assert a.closed[0] == 4003 and "password changed" in a.closed[1]
        # The old token no longer opens a session (the revocation is in the
        # store, so every replica and a restarted service refuse it too).
        closed = await connect(gateway, old)
        assert closed[0] == 4001 and "revoked" in closed[1], closed
        b = await connect(gateway, bob)
        assert isinstance(b, Client), b
        await b.close()
    run(scenario())

    # A token issued after the revocation works. Tokens carry whole seconds
    # and the revocation covers the second it was made in: wait for the
    # clock (no event to await).
    time.sleep(1.1)
    admin = harness.AdminClient(service)
    fresh = admin.call("IssueToken", user_id="alice").token
    admin.close()

    async def fresh_works():
        client = await connect(gateway, fresh)
        assert isinstance(client, Client), client
        await client.close()
    run(fresh_works())
