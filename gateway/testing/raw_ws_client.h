// RawWsClient: a deliberately small RFC 6455 client over a blocking POSIX
// socket, for the gateway's socket tests. Test-only.
//
// It exists because the tests need to misbehave in ways a real client
// library will not: open TCP and say nothing, send half a request, send
// invalid UTF-8 or an over-size frame, stop reading, never answer pings. It
// is written from the RFC, not from the gateway's code.
//
// Threading: thread-compatible; one test thread uses one client.
#ifndef PARLEY_GATEWAY_TESTING_RAW_WS_CLIENT_H_
#define PARLEY_GATEWAY_TESTING_RAW_WS_CLIENT_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace parley::gateway::testing {

class RawWsClient final {
 public:
  struct Frame {
    uint8_t opcode = 0;  // 0x1 text, 0x2 binary, 0x8 close, 0x9 ping, 0xA pong
    std::string payload;
    // For close frames.
    int close_code() const;
    std::string close_reason() const;
  };
  struct HttpResponse {
    int status = 0;
    std::map<std::string, std::string> headers;  // Lower-case names.
    std::string body;
  };

  RawWsClient() = default;
  ~RawWsClient();
  RawWsClient(const RawWsClient&) = delete;
  RawWsClient& operator=(const RawWsClient&) = delete;

  // Opens TCP to 127.0.0.1:port. `rcvbuf` > 0 sets SO_RCVBUF first.
  absl::Status Connect(int port, int rcvbuf = 0);
  // Sends an upgrade request for `target` (e.g. "/?token=x") with extra
  // header lines, and reads the response head (and body, if any).
  absl::StatusOr<HttpResponse> Handshake(
      const std::string& target,
      const std::map<std::string, std::string>& headers = {});
  // Connect() + Handshake(), failing unless the answer is 101.
  absl::Status Open(int port, const std::string& target,
                    const std::map<std::string, std::string>& headers = {});
  // Sends bytes as they are.
  absl::Status SendRaw(const std::string& bytes);
  // Sends one masked frame with FIN set.
  absl::Status SendFrame(uint8_t opcode, const std::string& payload);
  absl::Status SendText(const std::string& text) {
    return SendFrame(0x1, text);
  }
  // Reads one frame, waiting up to `timeout`.
  absl::StatusOr<Frame> ReadFrame(absl::Duration timeout = absl::Seconds(5));
  // Reads frames until a close frame; answers nothing. Returns it.
  absl::StatusOr<Frame> ReadUntilClose(
      absl::Duration timeout = absl::Seconds(5));
  // Waits for the server to close the TCP connection (read returns 0 or an
  // error). OK when it did; DEADLINE_EXCEEDED otherwise.
  absl::Status WaitForEof(absl::Duration timeout);
  // The local port of the TCP connection.
  int local_port() const;
  int fd() const { return fd_; }
  void Close();

  // A plain HTTP/1.1 GET; the server closes after answering.
  static absl::StatusOr<HttpResponse> Get(int port, const std::string& path);

 private:
  // Appends whatever arrives next to buffer_.
  absl::Status ReadSome(absl::Time deadline);
  absl::Status ReadExact(size_t n, std::string* out, absl::Time deadline);
  absl::StatusOr<HttpResponse> ReadHttpResponse(absl::Time deadline);

  int fd_ = -1;
  std::string buffer_;  // Bytes read but not consumed.
};

}  // namespace parley::gateway::testing

#endif  // PARLEY_GATEWAY_TESTING_RAW_WS_CLIENT_H_
