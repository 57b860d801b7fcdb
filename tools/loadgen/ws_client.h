// WsClient: one client WebSocket connection over standalone Asio, the load
// generator's socket adapter (the codec is ws_codec.h).
//
// It binds the socket to a chosen source address before connecting, which is
// how the generator spreads connections over 127.0.0.x, performs the opening
// handshake, answers pings, coalesces queued frames into one write, and
// reports through WsClientHandler. Nothing blocks.
//
// Order of callbacks: OnWsOpen at most once, then OnWsMessage any number of
// times, then OnWsClosed exactly once (also when connecting fails; then
// `code` is 1006 or the HTTP status that refused the upgrade, as "http_<n>").
//
// Threading: all methods and callbacks on the io_context's (single) thread.
#ifndef PARLEY_TOOLS_LOADGEN_WS_CLIENT_H_
#define PARLEY_TOOLS_LOADGEN_WS_CLIENT_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "asio.hpp"
#include "tools/loadgen/ws_codec.h"

namespace parley::loadgen {

class WsClientHandler {
 public:
  virtual ~WsClientHandler() = default;
  virtual void OnWsOpen() = 0;
  virtual void OnWsMessage(WsOpcode opcode, absl::string_view payload) = 0;
  // `code`: the peer's close code ("1000"), "1006" for a connection lost
  // without a close frame, "http_<status>" for a refused upgrade, or
  // "connect_<errno name>" when TCP connect failed.
  virtual void OnWsClosed(const std::string& code) = 0;
};

struct WsClientOptions {
  asio::ip::tcp::endpoint remote;
  // Bound before connect; unspecified address = let the kernel choose.
  asio::ip::address source;
  std::string host_header;  // "127.0.0.1:8080".
  std::string resource;     // "/?token=...".
  std::string subprotocol;  // Empty for none.
  uint64_t max_payload = 1 << 20;
};

class WsClient final : public std::enable_shared_from_this<WsClient> {
 public:
  WsClient(asio::io_context& io, WsClientOptions options,
           WsClientHandler* handler, uint32_t seed);

  // Connects; callbacks follow.
  void Start();
  // Queues one frame (ignored unless open).
  void Send(WsOpcode opcode, absl::string_view payload);
  // Sends a close frame; the connection ends when the server answers.
  void Close(int code);
  // Drops the connection at once (OnWsClosed("aborted") follows).
  void Abort();
  bool open() const { return state_ == State::kOpen; }

 private:
  enum class State { kConnecting, kHandshake, kOpen, kClosing, kClosed };

  void OnConnected(const asio::error_code& ec);
  void Read();
  void OnRead(const asio::error_code& ec, size_t n);
  bool ParseFrames();
  void Flush();
  void Finish(const std::string& code);
  uint32_t NextMask();

  asio::ip::tcp::socket socket_;
  WsClientOptions options_;
  WsClientHandler* handler_;
  State state_ = State::kConnecting;
  std::string in_;
  std::array<char, 4096> read_buf_;
  std::string out_;      // Being written.
  std::string pending_;  // Queued behind the write in flight.
  bool writing_ = false;
  std::string message_;  // A fragmented message being reassembled.
  WsOpcode message_opcode_ = WsOpcode::kText;
  uint32_t rng_;
};

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_WS_CLIENT_H_
