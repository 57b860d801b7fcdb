// Test helpers for protobuf messages: building one from text format and
// checking that a set of samples covers every member of a oneof. Used by the
// codec tests, which must exercise every client and server frame type.
// Thread-safe: pure functions.
#ifndef PARLEY_COMMON_PROTO_TEST_UTIL_H_
#define PARLEY_COMMON_PROTO_TEST_UTIL_H_

#include <set>
#include <string>
#include <vector>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace parley {

// The message `text` describes in protobuf text format; a test failure if it
// does not parse.
template <typename T>
T FromText(const std::string& text) {
  T m;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &m)) << text;
  return m;
}

// Names of the members of oneof `oneof` that are set in `samples`.
template <typename T>
std::set<std::string> OneofMembersSet(const std::vector<T>& samples,
                                      const std::string& oneof) {
  std::set<std::string> names;
  const auto* descriptor = T::descriptor()->FindOneofByName(oneof);
  for (const T& m : samples) {
    const auto* field =
        m.GetReflection()->GetOneofFieldDescriptor(m, descriptor);
    if (field != nullptr) names.insert(field->name());
  }
  return names;
}

// Names of all members of oneof `oneof` of T.
template <typename T>
std::set<std::string> OneofMembers(const std::string& oneof) {
  std::set<std::string> names;
  const auto* descriptor = T::descriptor()->FindOneofByName(oneof);
  for (int i = 0; i < descriptor->field_count(); ++i) {
    names.insert(descriptor->field(i)->name());
  }
  return names;
}

}  // namespace parley

#endif  // PARLEY_COMMON_PROTO_TEST_UTIL_H_
