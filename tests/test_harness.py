"""Checks of the harness itself: token minting and log parsing agree with
the formats the binaries use."""

import base64
import json

import harness


def _decode(part):
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def test_parse_log_line_splits_quoted_fields():
    event, fields = harness.parse_log_line(
        '2026-11-24T10:00:00.000Z level=warn event=handshake.failed '
        'peer=127.0.0.1:5 reason="Handshake not finished"')
    assert event == "handshake.failed"
    assert fields["peer"] == "127.0.0.1:5"
    assert fields["reason"] == "Handshake not finished"


def test_minted_token_is_hs256_with_sub_and_exp():
    token = harness.mint_token("k", "alice", ttl=60, device="phone", now=1000)
    header, body, sig = token.split(".")
    assert _decode(header)["alg"] == "HS256"
    assert _decode(body) == {"sub": "alice", "exp": 1060, "iat": 1000,
                             "dev": "phone"}
    assert len(sig) == 43


def test_generated_protos_import(pb):
    frame = pb.client.ClientFrame()
    frame.send.client_msg_id = "c1"
    frame.send.to.user = "bob"
    assert frame.WhichOneof("frame") == "send"
    assert hasattr(pb.admin_grpc, "AdminStub")
    assert hasattr(pb.gateway_link_grpc, "GatewayLinkStub")
