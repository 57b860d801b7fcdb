#include "common/http_server.h"

#include <asio.hpp>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string Get(const std::string& address, const std::string& request) {
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  const size_t colon = address.rfind(':');
  socket.connect({asio::ip::make_address(address.substr(0, colon)),
                  static_cast<uint16_t>(std::stoi(address.substr(colon + 1)))});
  asio::write(socket, asio::buffer(request));
  std::string response;
  std::error_code ec;
  asio::read(socket, asio::dynamic_buffer(response), ec);
  return response;
}

TEST(HttpServerTest, AnswersPathsFromTheHandlerOnAnEphemeralPort) {
  HttpServer server([](absl::string_view path) {
    if (path == "/metrics") return HttpResponse{200, "text/plain", "up 1\n"};
    return HttpResponse{404, "text/plain", "no\n"};
  });
  absl::StatusOr<std::string> bound = server.Start("127.0.0.1:0");
  ASSERT_TRUE(bound.ok()) << bound.status();
  EXPECT_THAT(*bound, StartsWith("127.0.0.1:"));
  EXPECT_NE(*bound, "127.0.0.1:0");
  std::string ok = Get(*bound, "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_THAT(ok, StartsWith("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(ok, HasSubstr("Content-Length: 5\r\n"));
  EXPECT_THAT(ok, HasSubstr("\r\n\r\nup 1\n"));
  EXPECT_THAT(Get(*bound, "GET /nope HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(Get(*bound, "POST /metrics HTTP/1.1\r\n\r\n"),
              StartsWith("HTTP/1.1 405"));
  server.Stop();
}

TEST(HttpServerTest, RejectsAnAddressWithoutPort) {
  HttpServer server([](absl::string_view) { return HttpResponse{}; });
  EXPECT_EQ(server.Start("localhost").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace parley
