#include "gateway/gateway_flags.h"

#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "common/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(std::string, listen_address);
ABSL_DECLARE_FLAG(absl::Duration, auth_timeout);
ABSL_DECLARE_FLAG(int64_t, max_buffered_bytes);
ABSL_DECLARE_FLAG(int64_t, max_held_bytes_total);
ABSL_DECLARE_FLAG(double, rate_limit_bytes_burst);
ABSL_DECLARE_FLAG(std::string, allowed_origins);
ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(int32_t, upstream_streams);
ABSL_DECLARE_FLAG(std::string, service_address);
ABSL_DECLARE_FLAG(absl::Duration, service_resolve_interval);

namespace parley::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class GatewayFlagsTest : public ::testing::Test {
 private:
  absl::FlagSaver saver_;
};

TEST_F(GatewayFlagsTest, DefaultsMatchTheIssue) {
  absl::StatusOr<GatewayConfig> config = GatewayConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.listen_address, "127.0.0.1:8080");
  EXPECT_EQ(config->server.handshake_timeout.count(), 5000);
  EXPECT_EQ(config->server.auth_timeout.count(), 10000);
  EXPECT_EQ(config->server.max_message_bytes, 64u * 1024);
  EXPECT_EQ(config->server.ping_interval.count(), 25000);
  EXPECT_EQ(config->server.io_threads, 0);
  EXPECT_TRUE(config->server.allowed_origins.empty());
  EXPECT_EQ(config->server.session.send_buffer_cap_bytes, 1u << 20);
  EXPECT_EQ(config->server.session.rate_limit_bytes_per_second, 1 << 20);
  EXPECT_EQ(config->server.session.rate_limit_bytes_burst, 4 << 20);
  EXPECT_EQ(config->server.session.heartbeat.count(), 25000);
  EXPECT_EQ(config->upstream.service_address, "127.0.0.1:7400");
  EXPECT_EQ(config->upstream.streams, 1);
  EXPECT_EQ(config->upstream.resolve_interval.count(), 5000);
  EXPECT_EQ(config->upstream.keepalive_time.count(), 20000);
  EXPECT_EQ(config->upstream.keepalive_timeout.count(), 10000);
}

TEST_F(GatewayFlagsTest, EnvironmentOverridesAreParsed) {
  ASSERT_TRUE(ApplyEnvironmentOverrides([](const char* name) -> const char* {
                std::string n = name;
                if (n == "PARLEY_AUTH_TIMEOUT") return "300ms";
                if (n == "PARLEY_ALLOWED_ORIGINS")
                  return "https://a, https://b";
                return nullptr;
              }).ok());
  absl::StatusOr<GatewayConfig> config = GatewayConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.auth_timeout.count(), 300);
  EXPECT_THAT(config->server.allowed_origins,
              ElementsAre("https://a", "https://b"));
}

TEST_F(GatewayFlagsTest, BadValuesNameTheFlag) {
  absl::SetFlag(&FLAGS_listen_address, "no-port");
  EXPECT_THAT(std::string(GatewayConfigFromFlags().status().message()),
              HasSubstr("no-port"));
  absl::SetFlag(&FLAGS_listen_address, "127.0.0.1:0");
  absl::SetFlag(&FLAGS_max_buffered_bytes, 100);
  EXPECT_THAT(std::string(GatewayConfigFromFlags().status().message()),
              HasSubstr("--max_buffered_bytes"));
  absl::SetFlag(&FLAGS_max_buffered_bytes, 1 << 20);
  absl::SetFlag(&FLAGS_rate_limit_bytes_burst, 1000);
  EXPECT_THAT(std::string(GatewayConfigFromFlags().status().message()),
              HasSubstr("--rate_limit_bytes_burst >= --max_message_bytes"));
  absl::SetFlag(&FLAGS_rate_limit_bytes_burst, 4 << 20);
  absl::SetFlag(&FLAGS_max_held_bytes_total, 1000);
  EXPECT_THAT(
      std::string(GatewayConfigFromFlags().status().message()),
      HasSubstr("--max_held_bytes_total must be >= --max_buffered_bytes"));
  absl::SetFlag(&FLAGS_max_held_bytes_total, 256 << 20);
  absl::SetFlag(&FLAGS_tls_cert, "/tmp/cert.pem");
  EXPECT_THAT(std::string(GatewayConfigFromFlags().status().message()),
              HasSubstr("--tls_key"));
  absl::SetFlag(&FLAGS_tls_cert, "");
  absl::SetFlag(&FLAGS_upstream_streams, 0);
  EXPECT_THAT(std::string(GatewayConfigFromFlags().status().message()),
              HasSubstr("--upstream_streams"));
}

TEST_F(GatewayFlagsTest, ServiceAddressListIsCheckedEntryByEntry) {
  absl::SetFlag(&FLAGS_service_address, "svc-a:7400,[::1]:7401,10.0.0.5:1");
  absl::StatusOr<GatewayConfig> config = GatewayConfigFromFlags();
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->upstream.service_address,
            "svc-a:7400,[::1]:7401,10.0.0.5:1");
  absl::SetFlag(&FLAGS_service_address, "svc-a:7400,svc-b");
  EXPECT_THAT(std::string(GatewayConfigFromFlags().status().message()),
              HasSubstr("--service_address entry \"svc-b\" has no port"));
  absl::SetFlag(&FLAGS_service_address, "svc-a:7400");
  absl::SetFlag(&FLAGS_service_resolve_interval, absl::ZeroDuration());
  EXPECT_THAT(std::string(GatewayConfigFromFlags().status().message()),
              HasSubstr("--service_resolve_interval"));
}

}  // namespace
}  // namespace parley::gateway
