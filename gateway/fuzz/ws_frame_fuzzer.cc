// libFuzzer target: the WebSocket frame reader that every client byte
// reaches in parley-gateway. The gateway reads frames with websocketpp's
// RFC 6455 processor, configured as gateway/ws_server.cc configures it (a
// 176-byte read buffer, so longer frames arrive over several reads; no
// permessage-deflate; the default 64 KiB message limit), and writes its own
// frames with common/ws_frame.h's header (a "prepared" websocketpp message,
// as WsConnection::Send does). Here websocketpp runs on its iostream
// transport, which is the same processor without sockets.
//
// The input: a first byte, then the client's byte stream. The first byte's
// low 7 bits pick the read size (0: 176 bytes, the gateway's buffer, else
// 1-127); its high bit says whether the stream begins with the client's own
// opening handshake (1) or comes after a fixed valid one (0).
//
// Every message the server reads goes through the gateway's own check
// (CheckClientMessage, which ServerImpl::OnMessage calls: 1007 when a text
// message ends mid code point) and is echoed back as the gateway sends
// frames. Checked:
//   * no message is larger than the limit, and text messages that pass are
//     UTF-8;
//   * what the server writes after its handshake response is a sequence of
//     whole, unmasked, final frames with the shortest length encoding and no
//     reserved bits: the echoes in order, byte for byte, then at most one
//     close frame, last, whose code a server may send.
// Built and run by tests/fuzz/run.sh (--config=fuzz, clang).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/fuzz/fuzz_check.h"
#include "common/ws_frame.h"
#include "gateway/client_message_check.h"
#include "websocketpp/config/core.hpp"
#include "websocketpp/server.hpp"
#include "websocketpp/utf8_validator.hpp"

namespace parley::gateway {
namespace {

// gateway/ws_server.cc's GatewayConfig, on the iostream transport.
struct FuzzConfig : public websocketpp::config::core {
  typedef FuzzConfig type;
  static const size_t connection_read_buffer_size = 176;
  static const websocketpp::log::level elog_level =
      websocketpp::log::elevel::none;
  static const websocketpp::log::level alog_level =
      websocketpp::log::alevel::none;
};

using Server = websocketpp::server<FuzzConfig>;
using Opcode = websocketpp::frame::opcode::value;

// WsServerOptions::max_message_bytes' default.
constexpr size_t kMaxMessageBytes = 64 * 1024;

constexpr absl::string_view kHandshake =
    "GET / HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: parley.v1.json\r\n"
    "\r\n";

struct Echo {
  Opcode opcode;
  std::string payload;
};

// What one input's connection did.
struct Run {
  std::string written;
  std::vector<Echo> echoed;
};

// The input being run (libFuzzer runs one at a time).
Run* current_run = nullptr;

// The server, with its handlers, made once.
Server& FuzzServer() {
  static Server* const server = [] {
    auto* s = new Server();
    s->set_max_message_size(kMaxMessageBytes);
    s->set_validate_handler([s](websocketpp::connection_hdl hdl) {
      Server::connection_ptr con = s->get_con_from_hdl(hdl);
      for (const std::string& name : con->get_requested_subprotocols()) {
        if (name == "parley.v1.json" || name == "parley.v1.proto") {
          con->select_subprotocol(name);
          break;
        }
      }
      return true;
    });
    s->set_message_handler([s](websocketpp::connection_hdl hdl,
                               Server::message_ptr msg) {
      const std::string& payload = msg->get_payload();
      if (payload.size() > kMaxMessageBytes) {
        FuzzFail(absl::StrCat("read a message of ", payload.size(), " bytes"));
      }
      Server::connection_ptr con = s->get_con_from_hdl(hdl);
      const bool binary =
          msg->get_opcode() == websocketpp::frame::opcode::binary;
      // ServerImpl::OnMessage's check; there the Session closes the
      // connection with the same code and reason.
      if (const std::optional<MessageClose> close =
              CheckClientMessage(payload, binary)) {
        websocketpp::lib::error_code ignored;
        con->close(close->code, std::string(close->reason), ignored);
        return;
      }
      if (!binary && !websocketpp::utf8_validator::validate(payload)) {
        FuzzFail("read a text message that is not UTF-8");
      }
      // WsConnection::Send.
      Server::message_ptr out = con->get_message(msg->get_opcode(), 0);
      std::string header;
      AppendWsFrameHeader(static_cast<uint8_t>(msg->get_opcode()),
                          payload.size(), /*masked=*/false, &header);
      out->set_header(header);
      out->set_payload(payload);
      out->set_prepared(true);
      if (!con->send(out)) {
        current_run->echoed.push_back({msg->get_opcode(), payload});
      }
    });
    return s;
  }();
  return *server;
}

// Checks what the server wrote after its handshake response.
void CheckFrames(absl::string_view out, const std::vector<Echo>& echoed) {
  size_t next_echo = 0;
  bool closed = false;
  while (!out.empty()) {
    if (closed) FuzzFail("a frame after the close frame");
    if (out.size() < 2) FuzzFail("a partial frame header");
    const uint8_t b0 = static_cast<uint8_t>(out[0]);
    const uint8_t b1 = static_cast<uint8_t>(out[1]);
    if (b0 != (0x80 | (b0 & 0x0F))) {
      FuzzFail(absl::StrCat("first header byte ", b0, ": not final, or RSV"));
    }
    if (b1 & 0x80) FuzzFail("a masked server frame");
    uint64_t length = b1 & 0x7F;
    size_t header = 2;
    if (length >= 126) {
      header = length == 126 ? 4 : 10;
      if (out.size() < header) FuzzFail("a partial extended length");
      length = 0;
      for (size_t i = 2; i < header; ++i) {
        length = (length << 8) | static_cast<uint8_t>(out[i]);
      }
      if (length < (header == 4 ? 126u : 0x10000u)) {
        FuzzFail(absl::StrCat("length ", length, " not in its shortest form"));
      }
    }
    if (out.size() - header < length) FuzzFail("a partial frame payload");
    const absl::string_view payload = out.substr(header, length);
    out.remove_prefix(header + length);
    const uint8_t opcode = b0 & 0x0F;
    switch (opcode) {
      case websocketpp::frame::opcode::text:
      case websocketpp::frame::opcode::binary:
        if (next_echo == echoed.size() || echoed[next_echo].opcode != opcode ||
            echoed[next_echo].payload != payload) {
          FuzzFail(absl::StrCat("data frame ", next_echo, " (opcode ", opcode,
                                ", ", length, " bytes) is not the echo"));
        }
        ++next_echo;
        break;
      case websocketpp::frame::opcode::close:
        closed = true;
        if (length == 1 || length > 125) {
          FuzzFail(absl::StrCat("a close frame of ", length, " bytes"));
        }
        if (length >= 2) {
          const uint16_t code =
              static_cast<uint16_t>((static_cast<uint8_t>(payload[0]) << 8) |
                                    static_cast<uint8_t>(payload[1]));
          if (!SendableCloseCode(code)) {
            FuzzFail(absl::StrCat("closed with code ", code));
          }
        }
        break;
      case websocketpp::frame::opcode::ping:
      case websocketpp::frame::opcode::pong:
        if (length > 125) FuzzFail("a control frame over 125 bytes");
        break;
      default:
        FuzzFail(absl::StrCat("a frame with opcode ", opcode));
    }
  }
  if (next_echo != echoed.size()) {
    FuzzFail(absl::StrCat(echoed.size() - next_echo, " echoes never written"));
  }
}

void Feed(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const size_t chunk = (data[0] & 0x7F) == 0 ? 176 : (data[0] & 0x7F);
  std::string stream;
  if ((data[0] & 0x80) == 0) stream = std::string(kHandshake);
  stream.append(reinterpret_cast<const char*>(data) + 1, size - 1);

  Run run;
  current_run = &run;
  Server::connection_ptr con = FuzzServer().get_connection();
  con->set_write_handler(
      [&run](websocketpp::connection_hdl, const char* bytes, size_t n) {
        run.written.append(bytes, n);
        return websocketpp::lib::error_code();
      });
  con->start();
  for (size_t at = 0; at < stream.size();) {
    const size_t n =
        con->read_some(stream.data() + at, std::min(chunk, stream.size() - at));
    if (n == 0) break;
    at += n;
  }
  // The peer goes away: the connection ends and lets go of its handlers.
  con->eof();
  current_run = nullptr;

  const size_t head_end = run.written.find("\r\n\r\n");
  if (head_end == std::string::npos) {
    if (!run.echoed.empty()) FuzzFail("echoes without a handshake response");
    return;
  }
  const absl::string_view frames =
      absl::string_view(run.written).substr(head_end + 4);
  if (!absl::StartsWith(run.written, "HTTP/1.1 101 ")) {
    if (!frames.empty()) FuzzFail("frames after a refused handshake");
    return;
  }
  CheckFrames(frames, run.echoed);
}

}  // namespace
}  // namespace parley::gateway

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parley::gateway::Feed(data, size);
  return 0;
}
