#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora: a few small valid and invalid inputs
per target, each file named after what it is.

  tests/fuzz/make_seeds.py

Run from anywhere; it rewrites <pkg>/fuzz/corpus/<target>/ (the files are
checked in, so run it only when the protocol changes). Protobuf inputs are
written from text format by Debian's protoc (--encode); tokens are HS256 JWTs
signed with the fuzz targets' secret, "fuzz-secret", expiring in 2100.
"""

import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
SECRET = b"fuzz-secret"
EXP_2100 = 4102444800


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(sub, exp=EXP_2100, dev="phone"):
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64url(json.dumps({"sub": sub, "exp": exp, "dev": dev}).encode())
    signing_input = f"{header}.{claims}"
    mac = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def encode(message_type, text):
    """The binary encoding of `text`, a parley.v1 message in text format."""
    proto = {"ClientFrame": "client", "ServerFrame": "client",
             "GatewayBatch": "gateway_link",
             "ServiceBatch": "gateway_link"}[message_type]
    return subprocess.run(
        ["/usr/bin/protoc", "--proto_path=" + os.path.join(ROOT, "proto"),
         "--proto_path=/usr/include", f"--encode=parley.v1.{message_type}",
         f"parley/v1/{proto}.proto"],
        input=text.encode(), stdout=subprocess.PIPE, check=True).stdout


def write(pkg, target, seeds):
    out = os.path.join(ROOT, pkg, "fuzz", "corpus", target)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)


CLIENT_FRAMES = {
    "hello": f'hello {{ token: "{token("alice")}" device: "phone" }}',
    "hello-resume": 'hello { token: "t" inbox_seq: 42 '
                    'store_generation: "g-1" }',
    "hello-resume-0": 'hello { token: "t" inbox_seq: 0 }',
    "send-user": 'send { client_msg_id: "c1" to { user: "bob" } '
                 'text: "hi \\"bob\\" caf\\303\\251 \\360\\237\\230\\200" }',
    "send-group": 'send { client_msg_id: "c2" to { group: "team" } '
                  'text: "hello team" }',
    "sync": "sync { after_seq: 18446744073709551615 limit: 100 }",
    "read": 'read { conversation: "d:alice:bob" seq: 7 }',
    "typing": 'typing { to { group: "team" } }',
    "ping": 'ping { nonce: "n1" }',
}

SERVER_FRAMES = {
    "welcome": 'welcome { session_id: "s1" user_id: "alice" inbox_seq: 9 '
               'heartbeat_ms: 25000 store_generation: "g-1" }',
    "ack": 'ack { client_msg_id: "c1" message_id: "m1" conversation: '
           '"d:alice:bob" seq: 3 inbox_seq: 4 sent_at { seconds: 1767225600 '
           'nanos: 123000000 } }',
    "message": 'message { message_id: "m2" conversation: "g:team" seq: 8 '
               'from: "bob" to { group: "team" } text: "hi" sent_at { '
               'seconds: 1767225600 nanos: 1 } client_msg_id: "b-1" }',
    "message-inbox-seq": 'message { inbox_seq: 12 message_id: "m3" from: '
                         '"carol" to { user: "alice" } text: "yo" }',
    "synced": 'synced { messages { inbox_seq: 1 text: "a" } messages { '
              'inbox_seq: 2 text: "b" } inbox_seq: 2 more: true }',
    "receipt": 'receipt { conversation: "d:alice:bob" user: "bob" seq: 3 }',
    "error": 'error { code: ERROR_CODE_RATE_LIMITED message: "slow down" '
             'client_msg_id: "c9" }',
    "presence": 'presence { user: "bob" online: true }',
    "announcement": 'announcement { text: "maintenance at 10" sent_at { '
                    'seconds: 253402300799 } }',
}


def json_seeds():
    seeds = {
        "hello.json": json.dumps({"hello": {"token": token("alice"),
                                            "device": "phone",
                                            "inboxSeq": "42",
                                            "storeGeneration": "g-1"}}),
        "hello-number-seq.json": '{"hello":{"token":"t","inbox_seq":7}}',
        "send.json": '{"send":{"clientMsgId":"c1","to":{"user":"bob"},'
                     '"text":"caf\\u00e9 \\ud83d\\ude00 <b>&</b>"}}',
        "send-group.json": '{"send":{"clientMsgId":"c2","to":{"group":"team"},'
                           '"text":"hi"}}',
        "sync.json": '{"sync":{"afterSeq":"18446744073709551615","limit":10}}',
        "read.json": '{"read":{"conversation":"d:alice:bob","seq":"7"}}',
        "typing.json": '{"typing":{"to":{"user":"bob"}}}',
        "ping.json": '{"ping":{"nonce":"n1"}}',
        "message.json": '{"message":{"inboxSeq":"12","messageId":"m1",'
                        '"from":"bob","to":{"user":"alice"},"text":"hi",'
                        '"sentAt":"2026-01-01T00:00:00.123456789Z"}}',
        "ack-offset-time.json": '{"ack":{"clientMsgId":"c1","inboxSeq":"4",'
                                '"sentAt":"2026-01-01T01:00:00+01:00"}}',
        "error-enum-number.json": '{"error":{"code":6,"message":"x"}}',
        "synced.json": '{"synced":{"messages":[{"inboxSeq":"1","text":"a"},'
                       '{"inboxSeq":"2"}],"inboxSeq":"2","more":true}}',
        "null-field.json": '{"send":{"clientMsgId":null,"text":"x"}}',
        "bad-trailing-comma.json": '{"ping":{"nonce":"n1",}}',
        "bad-unknown-field.json": '{"ping":{"nonce":"n1","extra":1}}',
        "bad-type.json": '{"sync":{"afterSeq":true}}',
        "bad-two-frames.json": '{"ping":{},"send":{}}',
        "bad-lone-surrogate.json": '{"ping":{"nonce":"\\ud800"}}',
        "bad-timestamp.json": '{"ack":{"sentAt":"10000-01-01T00:00:00Z"}}',
        "bad-nul.json": '{"ping":{"nonce":"a"}}\0',
        "bad-deep.json": '{"send":{"to":' * 40 + "{}" + "}}" * 40,
    }
    return seeds


def binary_seeds():
    seeds = {}
    for name, text in CLIENT_FRAMES.items():
        seeds[f"client-{name}.bin"] = encode("ClientFrame", text)
    for name, text in SERVER_FRAMES.items():
        seeds[f"server-{name}.bin"] = encode("ServerFrame", text)
    seeds["bad-truncated.bin"] = encode("ClientFrame", CLIENT_FRAMES["ping"])[:-1]
    seeds["bad-varint.bin"] = b"\x1a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    seeds["bad-wire-type.bin"] = b"\x0f\x01"
    seeds["bad-utf8.bin"] = b"\x32\x04\x0a\x02\xc3\x28"
    return seeds


def jwt_seeds():
    header = '{"alg":"HS256","typ":"JWT"}'
    return {
        "token": token("alice"),
        "token-expired": token("alice", exp=1600000000),
        "json-valid": header + '\n{"sub":"alice","exp":4102444800,'
                               '"iat":1767225600,"dev":"phone"}',
        "json-fraction": header + '\n{"sub":"bob","exp":4102444800.75,'
                                  '"iss":"other-backend"}',
        "json-string-exp": header + '\n{"sub":"bob","exp":"4102444800"}',
        "json-no-sub": header + '\n{"exp":4102444800}',
        "json-alg-none": '{"alg":"none"}\n{"sub":"a","exp":4102444800}',
        "bad-parts": "a.b",
        "bad-base64": "a.b!.c",
    }


def gateway_batch_seeds():
    alice, bob = token("alice"), token("bob")
    hello = 'events { hello { gateway_id: "gw-1" stream_index: 0 } }'
    opens = (f'events {{ open {{ session_id: "a1" token: "{alice}" '
             'device: "phone" peer_address: "127.0.0.1:5000" '
             'connected_at_unix_ms: 1767225600000 } } '
             f'events {{ open {{ session_id: "b1" token: "{bob}" '
             'resume_after: 0 } } ')

    def frame(session, text):
        return (f'events {{ frame {{ session_id: "{session}" frame {{ {text} '
                '} } } ')

    chat = "".join([
        frame("a1", 'send { client_msg_id: "c1" to { user: "bob" } '
                    'text: "hi" }'),
        frame("b1", 'send { client_msg_id: "c1" to { user: "alice" } '
                    'text: "yo" }'),
        frame("a1", 'send { client_msg_id: "c2" to { group: "team" } '
                    'text: "all" }'),
        frame("a1", 'send { client_msg_id: "c1" to { user: "bob" } '
                    'text: "hi" }'),
        frame("b1", 'sync { after_seq: 0 limit: 1 }'),
        frame("b1", 'read { conversation: "d:alice:bob" seq: 1 }'),
        frame("a1", 'typing { to { user: "bob" } }'),
        frame("a1", 'ping { nonce: "n" }'),
    ])
    return {
        "chat.bin": encode("GatewayBatch", hello + opens + chat +
                           'events { close { session_id: "a1" '
                           'reason: "client closed 1000" } }'),
        "reannounce.bin": encode(
            "GatewayBatch", hello +
            f'events {{ open {{ session_id: "a1" token: "{alice}" '
            'resume_after: 0 reannounce: true store_generation: "g" } } ' +
            frame("a1", 'send { client_msg_id: "c1" to { user: "carol" } '
                        'text: "again" }')),
        "resume-beyond-head.bin": encode(
            "GatewayBatch", hello +
            f'events {{ open {{ session_id: "a1" token: "{alice}" '
            'resume_after: 18446744073709551615 } }'),
        "other-gateway-session-id.bin": encode(
            "GatewayBatch", hello +
            f'events {{ open {{ session_id: "gw-2/bob" token: "{bob}" }} }} ' +
            frame("gw-2/bob", 'ping { nonce: "n" }')),
        "bad-token.bin": encode(
            "GatewayBatch", hello +
            'events { open { session_id: "x" token: "a.b.c" } } ' +
            frame("x", 'ping { nonce: "n" }')),
        "no-hello.bin": encode("GatewayBatch", opens),
        "empty-events.bin": encode("GatewayBatch", hello + "events { } "),
    }


def service_batch_seeds():
    def accepted(session, seq):
        return (f'events {{ accepted {{ session_id: "{session}" user_id: '
                f'"alice" inbox_seq: {seq} device: "phone" '
                'store_generation: "g" } } ')

    message = ('frame { message { message_id: "m1" conversation: '
               '"d:alice:bob" seq: 1 from: "bob" to { user: "alice" } '
               'text: "hi" sent_at { seconds: 1767225600 } } }')
    own = ('frame { message { message_id: "m2" conversation: '
           '"d:alice:bob" seq: 2 from: "alice" to { user: "bob" } '
           'text: "hi" client_msg_id: "c1" } }')
    return {
        "accept-and-deliver.bin": encode(
            "ServiceBatch",
            accepted("s-json", 3) + accepted("s-proto", 7) +
            'events { delivery { session_ids: "s-json" session_ids: '
            f'"s-proto" {message} inbox_seqs: 4 inbox_seqs: 8 }} }} '
            'events { delivery { session_ids: "s-json" frame { ack { '
            'client_msg_id: "c1" inbox_seq: 5 } } } } '
            'events { delivery { session_ids: "s-json" frame { ack { '
            'client_msg_id: "c1" inbox_seq: 5 } } } }'),
        "own-send-replayed.bin": encode(
            "ServiceBatch",
            accepted("s-proto", 7) +
            f'events {{ delivery {{ session_ids: "s-proto" {own} '
            'inbox_seqs: 9 } }'),
        "reject.bin": encode(
            "ServiceBatch",
            'events { rejected { session_id: "s-json" reason: '
            'REJECT_REASON_TOO_MANY_SESSIONS message: "too many" } } '
            'events { rejected { session_id: "s-proto" reason: 9 } }'),
        "disconnect.bin": encode(
            "ServiceBatch",
            accepted("s-json", 0) +
            'events { disconnect { session_ids: "s-json" session_ids: '
            '"s-wait" close_code: 4003 reason: "bye" reconnect: true } }'),
        "broadcast.bin": encode(
            "ServiceBatch",
            accepted("s-json", 0) +
            'events { broadcast { frame { announcement { text: "hello" } } '
            '} }'),
        "sync-page.bin": encode(
            "ServiceBatch",
            accepted("s-json", 2) +
            'events { delivery { session_ids: "s-json" frame { synced { '
            'messages { inbox_seq: 1 } messages { inbox_seq: 2 } '
            'inbox_seq: 2 } } } }'),
    }


def ws_frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d"):
    """A client frame: masked, with the shortest length form."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_seeds():
    # First byte: read size (low 7 bits; 0 = 176) and whether the client's
    # own handshake follows (high bit).
    ping = b'{"ping":{"nonce":"n1"}}'
    close = ws_frame(0x8, b"\x03\xe8bye")
    handshake = (b"GET /?token=t HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\n"
                 b"Connection: keep-alive, Upgrade\r\n"
                 b"Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Protocol: parley.v1.proto\r\n"
                 b"Origin: http://localhost\r\n\r\n")
    return {
        "text": b"\x00" + ws_frame(0x1, ping) + close,
        "text-byte-by-byte": b"\x01" + ws_frame(0x1, ping),
        "binary-16bit-length": b"\x07" + ws_frame(0x2, bytes(range(256)) * 2),
        "fragmented": b"\x00" + ws_frame(0x1, b'{"ping":', fin=False) +
                      ws_frame(0x9, b"p") + ws_frame(0x0, b'{"nonce":"n"}}'),
        "ping-pong": b"\x00" + ws_frame(0x9, b"are you there") +
                     ws_frame(0xA, b"unsolicited"),
        "own-handshake": b"\x80" + handshake + ws_frame(0x2, b"\x32\x03\x0a\x01n"),
        "bad-utf8": b"\x00" + ws_frame(0x1, b"caf\xc3"),
        "bad-utf8-split": b"\x00" + ws_frame(0x1, b"caf\xc3", fin=False) +
                          ws_frame(0x0, b"\xa9!"),
        "bad-too-big": b"\x00" + bytes([0x82, 0xFF]) + (1 << 20).to_bytes(8,
                                                                        "big")
                       + b"\0\0\0\0",
        "bad-unmasked": b"\x00" + bytes([0x81, 0x02]) + b"hi",
        "bad-reserved-bits": b"\x00" + bytes([0xC1]) + ws_frame(0x1, b"x")[1:],
        "bad-close-code": b"\x00" + ws_frame(0x8, b"\x03\xed"),
        "bad-handshake": b"\x80GET / HTTP/1.1\r\nHost: gw\r\n\r\n",
    }


def main():
    write("common", "json_codec_fuzzer", json_seeds())
    write("common", "frame_codec_fuzzer", binary_seeds())
    write("common", "jwt_fuzzer", jwt_seeds())
    write("service", "gateway_batch_fuzzer", gateway_batch_seeds())
    write("gateway", "service_batch_fuzzer", service_batch_seeds())
    write("gateway", "ws_frame_fuzzer", ws_seeds())


if __name__ == "__main__":
    main()
