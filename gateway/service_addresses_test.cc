#include "gateway/service_addresses.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::gateway {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseServiceAddressesTest, ListOfNamesAndLiteralsIsSplitIntoEntries) {
  absl::StatusOr<std::vector<ServiceAddress>> entries =
      ParseServiceAddresses("svc-a:7400, 10.0.0.5:7401 ,[::1]:7402,a_b.c:1");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 4u);
  EXPECT_EQ((*entries)[0].host, "svc-a");
  EXPECT_EQ((*entries)[0].port, 7400);
  EXPECT_EQ((*entries)[1].host, "10.0.0.5");
  EXPECT_EQ((*entries)[1].port, 7401);
  EXPECT_EQ((*entries)[2].host, "::1");
  EXPECT_EQ((*entries)[2].port, 7402);
  EXPECT_EQ((*entries)[3].host, "a_b.c");
}

TEST(ParseServiceAddressesTest, BadEntryIsRefusedByName) {
  struct Case {
    const char* list;
    const char* named;
  };
  for (const Case& c :
       {Case{"a:1,,b:2", "\"\""}, Case{"a:1,svc", "\"svc\""},
        Case{"svc:0", "\"svc:0\""}, Case{"svc:70000", "\"svc:70000\""},
        Case{"svc:+80", "\"svc:+80\""},
        Case{"a:1,bad host:80", "\"bad host:80\""},
        Case{"::1:80", "\"::1:80\""}, Case{"[::1]80", "\"[::1]80\""},
        Case{"[nope]:80", "\"[nope]:80\""}, Case{"-svc:80", "\"-svc:80\""},
        Case{"", "\"\""}}) {
    absl::StatusOr<std::vector<ServiceAddress>> entries =
        ParseServiceAddresses(c.list);
    ASSERT_FALSE(entries.ok()) << c.list;
    EXPECT_EQ(entries.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(entries.status().message(), HasSubstr(c.named)) << c.list;
  }
}

TEST(ResolveServiceAddressTest, LiteralsResolveToThemselves) {
  absl::StatusOr<std::vector<ServiceAddress>> entries =
      ParseServiceAddresses("127.0.0.1:7400,[::1]:7401");
  ASSERT_TRUE(entries.ok());
  EXPECT_THAT(*ResolveServiceAddress((*entries)[0]),
              ElementsAre("127.0.0.1:7400"));
  EXPECT_THAT(*ResolveServiceAddress((*entries)[1]), ElementsAre("[::1]:7401"));
}

TEST(ResolveServiceAddressTest, NameResolvesToItsAddresses) {
  absl::StatusOr<std::vector<ServiceAddress>> entries =
      ParseServiceAddresses("localhost:7400");
  ASSERT_TRUE(entries.ok());
  absl::StatusOr<std::vector<std::string>> resolved =
      ResolveServiceAddress((*entries)[0]);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  // ::1 too where the hosts file lists it.
  EXPECT_THAT(*resolved, Contains("127.0.0.1:7400"));
}

TEST(ResolveServiceAddressTest, UnknownNameIsUnavailableNamingTheEntry) {
  absl::StatusOr<std::vector<ServiceAddress>> entries =
      ParseServiceAddresses("no-such-host.invalid:7400");
  ASSERT_TRUE(entries.ok());
  absl::StatusOr<std::vector<std::string>> resolved =
      ResolveServiceAddress((*entries)[0]);
  ASSERT_FALSE(resolved.ok());
  EXPECT_EQ(resolved.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(resolved.status().message(),
              HasSubstr("no-such-host.invalid:7400"));
}

}  // namespace
}  // namespace parley::gateway
