// CurlPoster against real HTTP servers on loopback: one that answers, one
// that is down (nothing listens), and one too slow for the timeout.
#include "service/curl_poster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

using ::testing::HasSubstr;

// Serves one request: reads it whole, then (unless told to hang until
// released) answers `status`.
class OneShotHttpServer {
 public:
  explicit OneShotHttpServer(int status, bool hang = false)
      : status_(status), hang_(hang) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    EXPECT_EQ(listen(fd_, 4), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~OneShotHttpServer() {
    release_.Notify();
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }

  int port() const { return port_; }
  std::string url() const {
    return absl::StrCat("http://127.0.0.1:", port_, "/hook");
  }
  std::string request() {
    absl::MutexLock lock(&mu_);
    return request_;
  }

 private:
  void Serve() {
    const int conn = accept(fd_, nullptr, nullptr);
    if (conn < 0) return;
    std::string data;
    char buf[4096];
    size_t want = std::string::npos;
    while (want == std::string::npos || data.size() < want) {
      const ssize_t n = read(conn, buf, sizeof(buf));
      if (n <= 0) break;
      data.append(buf, n);
      const size_t end = data.find("\r\n\r\n");
      if (want == std::string::npos && end != std::string::npos) {
        size_t length = 0;
        for (absl::string_view line :
             absl::StrSplit(data.substr(0, end), "\r\n")) {
          if (absl::StartsWithIgnoreCase(line, "content-length:")) {
            (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)),
                                   &length);
          }
        }
        want = end + 4 + length;
      }
    }
    {
      absl::MutexLock lock(&mu_);
      request_ = data;
    }
    if (hang_) release_.WaitForNotification();
    const std::string response =
        absl::StrCat("HTTP/1.1 ", status_,
                     " X\r\nContent-Length: 2\r\nConnection: close\r\n"
                     "\r\nok");
    (void)write(conn, response.data(), response.size());
    close(conn);
  }

  const int status_;
  const bool hang_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  absl::Notification release_;
  absl::Mutex mu_;
  std::string request_ ABSL_GUARDED_BY(mu_);
};

TEST(CurlPosterTest, PostsBodyAndHeadersAndReturnsTheStatus) {
  OneShotHttpServer server(202);
  CurlPoster poster;
  PostResult r = poster.Post(
      server.url(),
      {"Content-Type: application/json", "X-Parley-Signature: v1=ab"},
      R"({"recipient":"bob"})", absl::Seconds(5));
  EXPECT_EQ(r.http_status, 202) << r.error;
  const std::string request = server.request();
  EXPECT_THAT(request, HasSubstr("POST /hook HTTP/1.1\r\n"));
  EXPECT_THAT(request, HasSubstr("X-Parley-Signature: v1=ab\r\n"));
  EXPECT_THAT(request, HasSubstr("\r\n\r\n{\"recipient\":\"bob\"}"));
}

TEST(CurlPosterTest, AServerThatIsDownIsNoResponseWithTheReason) {
  int port = 0;
  {
    // A port that was free a moment ago and has nobody listening now.
    OneShotHttpServer closed(200);
    port = closed.port();
    CurlPoster().Post(closed.url(), {}, "x", absl::Seconds(5));
  }
  PostResult r =
      CurlPoster().Post(absl::StrCat("http://127.0.0.1:", port, "/hook"), {},
                        "x", absl::Seconds(5));
  EXPECT_EQ(r.http_status, 0);
  EXPECT_THAT(r.error, HasSubstr("connect"));
}

TEST(CurlPosterTest, ASlowServerTimesOut) {
  OneShotHttpServer server(200, /*hang=*/true);
  PostResult r =
      CurlPoster().Post(server.url(), {}, "x", absl::Milliseconds(300));
  EXPECT_EQ(r.http_status, 0);
  EXPECT_THAT(r.error, HasSubstr("imeout"));
}

}  // namespace
}  // namespace parley::service
