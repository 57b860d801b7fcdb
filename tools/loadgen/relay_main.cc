// ws-relay: the raw websocketpp relay, the transport's own ceiling in the
// benchmark (issue 7, "(a)"). Every frame from a connection is forwarded
// unchanged to the other connection that gave the same ?pair=<key>: no
// authentication, no gRPC hop, no storage. websocketpp's asio config with
// logging off; `--io_threads` threads run the io_context (0 = one per core,
// as parley-gateway does), and the pair table is shared under a mutex.
//
//   ws-relay --listen_address=127.0.0.1:0
//   => ... event=relay.ready address=127.0.0.1:41234
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "common/config.h"
#include "common/log.h"
#include "tools/loadgen/pair_table.h"
#include "websocketpp/config/asio_no_tls.hpp"
#include "websocketpp/server.hpp"

ABSL_FLAG(std::string, listen_address, "127.0.0.1:0",
          "host:port to listen on (port 0 = any free port).");
ABSL_FLAG(int32_t, listen_backlog, 4096, "listen(2) backlog.");
ABSL_FLAG(int32_t, io_threads, 0, "I/O threads; 0 = one per core.");

namespace parley::loadgen {
namespace {

using Server = websocketpp::server<websocketpp::config::asio>;

std::string PairKey(const std::string& resource) {
  const size_t q = resource.find('?');
  if (q == std::string::npos) return "";
  for (absl::string_view kv :
       absl::StrSplit(absl::string_view(resource).substr(q + 1), '&')) {
    if (absl::ConsumePrefix(&kv, "pair=")) return std::string(kv);
  }
  return "";
}

int Main(int argc, char** argv) {
  ParseConfig(argc, argv, "ws-relay: raw websocketpp pair relay");
  const std::string listen = absl::GetFlag(FLAGS_listen_address);
  std::pair<std::string, std::string> hp =
      absl::StrSplit(listen, absl::MaxSplits(':', 1));
  int port = 0;
  if (!absl::SimpleAtoi(hp.second, &port)) {
    LogError("relay.flags", {{"error", "--listen_address must be host:port"}});
    return 2;
  }
  Server server;
  server.clear_access_channels(websocketpp::log::alevel::all);
  server.clear_error_channels(websocketpp::log::elevel::all);
  absl::Mutex mu;
  PairTable<websocketpp::connection_hdl> pairs ABSL_GUARDED_BY(mu);

  try {
    server.init_asio();
    server.set_reuse_addr(true);
    server.set_listen_backlog(absl::GetFlag(FLAGS_listen_backlog));
    server.set_open_handler([&](websocketpp::connection_hdl hdl) {
      Server::connection_ptr con = server.get_con_from_hdl(hdl);
      const std::string key = PairKey(con->get_resource());
      bool joined = false;
      std::optional<websocketpp::connection_hdl> peer;
      if (!key.empty()) {
        std::vector<websocketpp::connection_hdl> members;
        {
          absl::MutexLock lock(&mu);
          joined = pairs.Join(key, hdl);
          if (joined) {
            peer = pairs.Peer(hdl);
          } else {
            members = pairs.Members(key);
          }
        }
        // A full pair may hold a connection that is closing: its client,
        // churning, reconnects before the relay has run the close handler.
        // That member gives way.
        std::vector<websocketpp::connection_hdl> stale;
        for (const websocketpp::connection_hdl& m : members) {
          websocketpp::lib::error_code ec;
          Server::connection_ptr c = server.get_con_from_hdl(m, ec);
          if (ec || c->get_state() != websocketpp::session::state::open) {
            stale.push_back(m);
          }
        }
        if (!stale.empty()) {
          absl::MutexLock lock(&mu);
          for (const websocketpp::connection_hdl& m : stale) pairs.Leave(m);
          joined = pairs.Join(key, hdl);
          if (joined) peer = pairs.Peer(hdl);
        }
      }
      websocketpp::lib::error_code ec;
      if (!joined) {
        con->close(websocketpp::close::status::policy_violation,
                   key.empty() ? "no ?pair=" : "pair is full", ec);
        return;
      }
      if (!peer.has_value()) return;  // The first member waits for its peer.
      // Both members are registered now: the newcomer is told first, so its
      // notice is queued ahead of anything the waiting member sends it.
      server.send(hdl, kRelayPairedNotice, websocketpp::frame::opcode::text,
                  ec);
      server.send(*peer, kRelayPairedNotice, websocketpp::frame::opcode::text,
                  ec);
    });
    server.set_close_handler([&](websocketpp::connection_hdl hdl) {
      absl::MutexLock lock(&mu);
      pairs.Leave(hdl);
    });
    server.set_fail_handler([&](websocketpp::connection_hdl hdl) {
      absl::MutexLock lock(&mu);
      pairs.Leave(hdl);
    });
    server.set_message_handler(
        [&](websocketpp::connection_hdl hdl, Server::message_ptr msg) {
          std::optional<websocketpp::connection_hdl> peer;
          {
            absl::MutexLock lock(&mu);
            peer = pairs.Peer(hdl);
          }
          if (!peer.has_value()) return;  // Peer not here: dropped.
          websocketpp::lib::error_code ec;
          server.send(*peer, msg->get_payload(), msg->get_opcode(), ec);
        });
    server.listen(asio::ip::tcp::endpoint(asio::ip::make_address(hp.first),
                                          static_cast<uint16_t>(port)));
    server.start_accept();
    asio::error_code ec;
    const auto local = server.get_local_endpoint(ec);
    LogInfo("relay.ready",
            {{"address",
              absl::StrCat(local.address().to_string(), ":", local.port())}});
    int threads = absl::GetFlag(FLAGS_io_threads);
    if (threads <= 0) {
      threads =
          static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    }
    std::vector<std::thread> workers;
    for (int i = 1; i < threads; ++i) {
      workers.emplace_back([&server] {
        try {
          server.run();
        } catch (const std::exception& e) {
          LogError("relay.failed", {{"error", e.what()}});
        }
      });
    }
    server.run();
    for (std::thread& t : workers) t.join();
  } catch (const std::exception& e) {
    LogError("relay.failed", {{"error", e.what()}});
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace parley::loadgen

int main(int argc, char** argv) { return parley::loadgen::Main(argc, argv); }
