#include "common/http_server.h"

#include <asio.hpp>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"

namespace parley {
namespace {

constexpr size_t kMaxRequestBytes = 8192;
constexpr auto kRequestTimeout = std::chrono::seconds(5);

absl::string_view Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 503:
      return "Service Unavailable";
    default:
      return "Status";
  }
}

// One connection: read the request head, answer, close.
class Connection final : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::ip::tcp::socket socket, const HttpServer::Handler* handler)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        handler_(handler) {}

  void Start() {
    timer_.expires_after(kRequestTimeout);
    timer_.async_wait([self = shared_from_this()](std::error_code ec) {
      if (!ec) {
        std::error_code ignored;
        self->socket_.close(ignored);
      }
    });
    asio::async_read_until(
        socket_, asio::dynamic_buffer(request_, kMaxRequestBytes), "\r\n\r\n",
        [self = shared_from_this()](std::error_code ec, size_t) {
          if (ec) {
            self->timer_.cancel();
            return;
          }
          self->Respond();
        });
  }

 private:
  void Respond() {
    const absl::string_view line =
        absl::string_view(request_).substr(0, request_.find("\r\n"));
    std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    HttpResponse response;
    if (parts.size() < 2 || (parts[0] != "GET" && parts[0] != "HEAD")) {
      response = {405, "text/plain; charset=utf-8", "only GET\n"};
    } else {
      absl::string_view path = parts[1];
      path = path.substr(0, path.find('?'));
      response = (*handler_)(path);
    }
    const bool head = !parts.empty() && parts[0] == "HEAD";
    reply_ = absl::StrCat(
        "HTTP/1.1 ", response.status, " ", Reason(response.status),
        "\r\nContent-Type: ", response.content_type,
        "\r\nContent-Length: ", response.body.size(),
        "\r\nConnection: close\r\n\r\n", head ? "" : response.body);
    asio::async_write(socket_, asio::buffer(reply_),
                      [self = shared_from_this()](std::error_code, size_t) {
                        std::error_code ignored;
                        self->socket_.shutdown(
                            asio::ip::tcp::socket::shutdown_both, ignored);
                        self->socket_.close(ignored);
                        self->timer_.cancel();
                      });
  }

  asio::ip::tcp::socket socket_;
  asio::steady_timer timer_;
  const HttpServer::Handler* handler_;
  std::string request_;
  std::string reply_;
};

}  // namespace

struct HttpServer::Impl {
  explicit Impl(Handler h) : handler(std::move(h)), acceptor(io) {}

  void Accept() {
    acceptor.async_accept(
        [this](std::error_code ec, asio::ip::tcp::socket socket) {
          if (ec) {
            if (ec == asio::error::operation_aborted) return;
            LogWarn("http.accept_failed", {{"error", ec.message()}});
          } else {
            std::make_shared<Connection>(std::move(socket), &handler)->Start();
          }
          Accept();
        });
  }

  Handler handler;
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor;
};

HttpServer::HttpServer(Handler handler)
    : impl_(std::make_unique<Impl>(std::move(handler))) {}

HttpServer::~HttpServer() { Stop(); }

absl::StatusOr<std::string> HttpServer::Start(const std::string& address) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address \"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::error_code ec;
  asio::ip::tcp::resolver resolver(impl_->io);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve \"", host, "\": ", ec.message()));
  }
  const asio::ip::tcp::endpoint endpoint = results.begin()->endpoint();
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address, ": ", ec.message()));
  }
  const uint16_t bound = acceptor.local_endpoint().port();
  impl_->Accept();
  thread_ = std::thread([this] { impl_->io.run(); });
  return absl::StrCat(address.substr(0, colon), ":", bound);
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  impl_->io.stop();
  thread_.join();
}

}  // namespace parley
