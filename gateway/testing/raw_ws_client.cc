#include "gateway/testing/raw_ws_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace parley::gateway::testing {

int RawWsClient::Frame::close_code() const {
  if (payload.size() < 2) return 1005;
  return (static_cast<uint8_t>(payload[0]) << 8) |
         static_cast<uint8_t>(payload[1]);
}

std::string RawWsClient::Frame::close_reason() const {
  return payload.size() > 2 ? payload.substr(2) : "";
}

RawWsClient::~RawWsClient() { Close(); }

void RawWsClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

absl::Status RawWsClient::Connect(int port, int rcvbuf) {
  Close();
  buffer_.clear();
  fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd_ < 0) return absl::InternalError(std::strerror(errno));
  if (rcvbuf > 0) {
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return absl::UnavailableError(
        absl::StrCat("connect: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

int RawWsClient::local_port() const {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

absl::Status RawWsClient::SendRaw(const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n =
        ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(
          absl::StrCat("send: ", std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status RawWsClient::SendFrame(uint8_t opcode,
                                    const std::string& payload) {
  std::string frame;
  frame.push_back(static_cast<char>(0x80 | opcode));
  const size_t n = payload.size();
  if (n < 126) {
    frame.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    frame.push_back(static_cast<char>(0x80 | 126));
    frame.push_back(static_cast<char>(n >> 8));
    frame.push_back(static_cast<char>(n & 0xff));
  } else {
    frame.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) {
      frame.push_back(
          static_cast<char>((static_cast<uint64_t>(n) >> (8 * i)) & 0xff));
    }
  }
  const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
  frame.append(reinterpret_cast<const char*>(mask), 4);
  for (size_t i = 0; i < n; ++i) {
    frame.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
  }
  return SendRaw(frame);
}

absl::Status RawWsClient::ReadSome(absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError("read timed out");
    }
    pollfd p{fd_, POLLIN, 0};
    int r =
        ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r <= 0) continue;
    char chunk[65536];
    ssize_t got = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (got == 0) return absl::AbortedError("connection closed by peer");
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return absl::AbortedError(absl::StrCat("recv: ", std::strerror(errno)));
    }
    buffer_.append(chunk, static_cast<size_t>(got));
    return absl::OkStatus();
  }
}

absl::Status RawWsClient::ReadExact(size_t n, std::string* out,
                                    absl::Time deadline) {
  while (buffer_.size() < n) {
    absl::Status s = ReadSome(deadline);
    if (!s.ok()) return s;
  }
  out->assign(buffer_, 0, n);
  buffer_.erase(0, n);
  return absl::OkStatus();
}

absl::StatusOr<RawWsClient::HttpResponse> RawWsClient::ReadHttpResponse(
    absl::Time deadline) {
  std::string head;
  while (true) {
    size_t end = buffer_.find("\r\n\r\n");
    if (end != std::string::npos) {
      head = buffer_.substr(0, end);
      buffer_.erase(0, end + 4);
      break;
    }
    absl::Status s = ReadSome(deadline);
    if (!s.ok()) return s;
  }
  HttpResponse response;
  std::vector<std::string> lines = absl::StrSplit(head, "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 ||
      !absl::SimpleAtoi(status_line[1], &response.status)) {
    return absl::InternalError("bad status line: " + lines[0]);
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(lines[i], absl::MaxSplits(':', 1));
    response.headers[absl::AsciiStrToLower(kv.first)] =
        std::string(absl::StripAsciiWhitespace(kv.second));
  }
  size_t length = 0;
  if (auto it = response.headers.find("content-length");
      it != response.headers.end() && absl::SimpleAtoi(it->second, &length) &&
      length > 0) {
    absl::Status s = ReadExact(length, &response.body, deadline);
    if (!s.ok()) return s;
  }
  return response;
}

absl::StatusOr<RawWsClient::HttpResponse> RawWsClient::Handshake(
    const std::string& target,
    const std::map<std::string, std::string>& headers) {
  std::string request = absl::StrCat(
      "GET ", target,
      " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n");
  if (headers.find("Sec-WebSocket-Version") == headers.end()) {
    request += "Sec-WebSocket-Version: 13\r\n";
  }
  for (const auto& [k, v] : headers)
    absl::StrAppend(&request, k, ": ", v, "\r\n");
  request += "\r\n";
  absl::Status s = SendRaw(request);
  if (!s.ok()) return s;
  return ReadHttpResponse(absl::Now() + absl::Seconds(5));
}

absl::Status RawWsClient::Open(
    int port, const std::string& target,
    const std::map<std::string, std::string>& headers) {
  absl::Status s = Connect(port);
  if (!s.ok()) return s;
  absl::StatusOr<HttpResponse> r = Handshake(target, headers);
  if (!r.ok()) return r.status();
  if (r->status != 101) {
    return absl::FailedPreconditionError(
        absl::StrCat("handshake answered ", r->status));
  }
  return absl::OkStatus();
}

absl::StatusOr<RawWsClient::Frame> RawWsClient::ReadFrame(
    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string head;
  absl::Status s = ReadExact(2, &head, deadline);
  if (!s.ok()) return s;
  Frame frame;
  frame.opcode = static_cast<uint8_t>(head[0]) & 0x0f;
  uint64_t length = static_cast<uint8_t>(head[1]) & 0x7f;
  if (length >= 126) {
    std::string ext;
    s = ReadExact(length == 126 ? 2 : 8, &ext, deadline);
    if (!s.ok()) return s;
    length = 0;
    for (char c : ext) length = (length << 8) | static_cast<uint8_t>(c);
  }
  s = ReadExact(length, &frame.payload, deadline);
  if (!s.ok()) return s;
  return frame;
}

absl::StatusOr<RawWsClient::Frame> RawWsClient::ReadUntilClose(
    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<Frame> frame = ReadFrame(deadline - absl::Now());
    if (!frame.ok()) return frame.status();
    if (frame->opcode == 0x8) return frame;
  }
}

absl::Status RawWsClient::WaitForEof(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::Status s = ReadSome(deadline);
    if (absl::IsAborted(s)) return absl::OkStatus();
    if (!s.ok()) return s;
    buffer_.clear();
  }
}

absl::StatusOr<RawWsClient::HttpResponse> RawWsClient::Get(
    int port, const std::string& path) {
  RawWsClient client;
  absl::Status s = client.Connect(port);
  if (!s.ok()) return s;
  s = client.SendRaw(absl::StrCat("GET ", path,
                                  " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Connection: close\r\n\r\n"));
  if (!s.ok()) return s;
  return client.ReadHttpResponse(absl::Now() + absl::Seconds(5));
}

}  // namespace parley::gateway::testing
