#include "tools/loadgen/ws_client.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace parley::loadgen {

WsClient::WsClient(asio::io_context& io, WsClientOptions options,
                   WsClientHandler* handler, uint32_t seed)
    : socket_(io),
      options_(std::move(options)),
      handler_(handler),
      rng_(seed == 0 ? 0x9E3779B9u : seed) {}

uint32_t WsClient::NextMask() {
  // xorshift32: masks need not be cryptographic for a load generator.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 17;
  rng_ ^= rng_ << 5;
  return rng_;
}

void WsClient::Start() {
  asio::error_code ec;
  socket_.open(options_.remote.protocol(), ec);
  if (!ec) socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  if (!ec && !options_.source.is_unspecified()) {
    // The kernel picks the port at connect() time, per destination.
    const int one = 1;
    ::setsockopt(socket_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT,
                 &one, sizeof(one));
    socket_.bind(asio::ip::tcp::endpoint(options_.source, 0), ec);
  }
  if (ec) {
    Finish(absl::StrCat("connect_", ec.message()));
    return;
  }
  socket_.async_connect(options_.remote,
                        [self = shared_from_this()](const asio::error_code& e) {
                          self->OnConnected(e);
                        });
}

void WsClient::OnConnected(const asio::error_code& ec) {
  if (state_ == State::kClosed) return;
  if (ec) {
    Finish(absl::StrCat("connect_", ec.message()));
    return;
  }
  state_ = State::kHandshake;
  char key_bytes[16];
  for (int i = 0; i < 16; i += 4) {
    const uint32_t r = NextMask();
    memcpy(key_bytes + i, &r, 4);
  }
  pending_ = BuildHandshakeRequest(
      options_.host_header, options_.resource,
      absl::Base64Escape(absl::string_view(key_bytes, 16)),
      options_.subprotocol);
  Flush();
  Read();
}

void WsClient::Read() {
  socket_.async_read_some(
      asio::buffer(read_buf_),
      [self = shared_from_this()](const asio::error_code& ec, size_t n) {
        self->OnRead(ec, n);
      });
}

void WsClient::OnRead(const asio::error_code& ec, size_t n) {
  if (state_ == State::kClosed) return;
  if (ec) {
    Finish(state_ == State::kClosing ? "1000" : "1006");
    return;
  }
  in_.append(read_buf_.data(), n);
  if (state_ == State::kHandshake) {
    absl::StatusOr<HandshakeResponse> response = ParseHandshakeResponse(in_);
    if (!response.ok()) {
      Finish("http_garbage");
      return;
    }
    if (response->consumed == 0) {
      Read();
      return;
    }
    if (response->status != 101) {
      Finish(absl::StrCat("http_", response->status));
      return;
    }
    in_.erase(0, response->consumed);
    state_ = State::kOpen;
    handler_->OnWsOpen();
    if (state_ == State::kClosed) return;
  }
  if (!ParseFrames()) return;
  Read();
}

bool WsClient::ParseFrames() {
  size_t pos = 0;
  while (state_ == State::kOpen || state_ == State::kClosing) {
    WsFrame frame;
    absl::StatusOr<size_t> used = ParseServerFrame(
        absl::string_view(in_).substr(pos), options_.max_payload, &frame);
    if (!used.ok()) {
      Finish("protocol_error");
      return false;
    }
    if (*used == 0) break;
    pos += *used;
    switch (frame.opcode) {
      case WsOpcode::kPing:
        if (state_ == State::kOpen) Send(WsOpcode::kPong, frame.payload);
        break;
      case WsOpcode::kPong:
        break;
      case WsOpcode::kClose: {
        const std::string code = absl::StrCat(CloseCode(frame.payload));
        if (state_ == State::kOpen) {
          AppendClientFrame(WsOpcode::kClose, frame.payload.substr(0, 2),
                            NextMask(), &pending_);
          Flush();
        }
        Finish(code);
        return false;
      }
      case WsOpcode::kContinuation:
        message_.append(frame.payload.data(), frame.payload.size());
        if (frame.fin) {
          if (state_ == State::kOpen) {
            handler_->OnWsMessage(message_opcode_, message_);
          }
          message_.clear();
        }
        break;
      default:
        if (!frame.fin) {
          message_opcode_ = frame.opcode;
          message_.assign(frame.payload.data(), frame.payload.size());
        } else if (state_ == State::kOpen) {
          handler_->OnWsMessage(frame.opcode, frame.payload);
        }
        break;
    }
  }
  if (state_ == State::kClosed) return false;
  in_.erase(0, pos);
  return true;
}

void WsClient::Send(WsOpcode opcode, absl::string_view payload) {
  if (state_ != State::kOpen) return;
  AppendClientFrame(opcode, payload, NextMask(), &pending_);
  Flush();
}

void WsClient::Close(int code) {
  if (state_ != State::kOpen) return;
  const char body[2] = {static_cast<char>(code >> 8),
                        static_cast<char>(code & 0xFF)};
  AppendClientFrame(WsOpcode::kClose, absl::string_view(body, 2), NextMask(),
                    &pending_);
  state_ = State::kClosing;
  Flush();
}

void WsClient::Abort() {
  if (state_ == State::kClosed) return;
  Finish("aborted");
}

void WsClient::Flush() {
  if (writing_ || pending_.empty() || state_ == State::kClosed) return;
  out_.swap(pending_);
  pending_.clear();
  writing_ = true;
  asio::async_write(
      socket_, asio::buffer(out_),
      [self = shared_from_this()](const asio::error_code& ec, size_t) {
        self->writing_ = false;
        self->out_.clear();
        if (self->state_ == State::kClosed) return;
        if (ec) {
          self->Finish("1006");
          return;
        }
        self->Flush();
      });
}

void WsClient::Finish(const std::string& code) {
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  asio::error_code ignored;
  socket_.close(ignored);
  in_.clear();
  in_.shrink_to_fit();
  handler_->OnWsClosed(code);
}

}  // namespace parley::loadgen
