// HttpServer: a minimal HTTP/1.1 server for /metrics and /healthz.
//
// It answers GET requests with what a handler returns and closes each
// connection after the response (Prometheus scrapes and health probes need
// nothing more). Requests larger than 8 KiB or slower than 5 s are dropped.
// Runs on one asio thread of its own.
//
//   HttpServer server([](absl::string_view path) -> HttpResponse {
//     if (path == "/healthz") return {200, "text/plain", "ok\n"};
//     return {404, "text/plain", "not found\n"};
//   });
//   absl::StatusOr<std::string> bound = server.Start("127.0.0.1:0");
//
// Threading: the handler runs on the server's thread and must not block for
// long. Start() and Stop() are called from one owner thread.
#ifndef PARLEY_COMMON_HTTP_SERVER_H_
#define PARLEY_COMMON_HTTP_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

class HttpServer final {
 public:
  // Called with the request path (without the query string).
  using Handler = std::function<HttpResponse(absl::string_view path)>;

  explicit HttpServer(Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds "host:port" (port may be 0) and starts serving; returns the bound
  // address "host:port".
  absl::StatusOr<std::string> Start(const std::string& address);
  // Stops accepting, drops open connections, joins the thread.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace parley

#endif  // PARLEY_COMMON_HTTP_SERVER_H_
