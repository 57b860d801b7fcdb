#include "common/json_codec.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "rapidjson/error/en.h"
#include "rapidjson/reader.h"

namespace parley {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::DescriptorPool;
using ::google::protobuf::EnumValueDescriptor;
using ::google::protobuf::FieldDescriptor;
using ::google::protobuf::FileDescriptor;
using ::google::protobuf::Message;
using ::google::protobuf::MessageFactory;
using ::google::protobuf::Reflection;

bool AppendEscaped(absl::string_view s, std::string* out);

// ---------------------------------------------------------------------------
// Per-type descriptions, built once per Descriptor.

enum class Kind {
  kString,
  kBool,
  kInt32,
  kUint32,
  kInt64,
  kUint64,
  kEnum,
  kMessage,
  kTimestamp,
};

struct MessageInfo;

struct FieldInfo {
  const FieldDescriptor* field = nullptr;
  Kind kind = Kind::kString;
  bool repeated = false;
  bool in_oneof = false;
  // Position in MessageInfo::fields, to notice a field given twice.
  int index = 0;
  // "\"jsonName\":", printed before the value.
  std::string key;
  // The nested type, for kMessage.
  const MessageInfo* message = nullptr;
};

// Orders names by length first: most comparisons never read the bytes.
bool NameLess(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return a.size() < b.size();
  return std::memcmp(a.data(), b.data(), a.size()) < 0;
}

struct MessageInfo {
  const Descriptor* descriptor = nullptr;
  // The generated class's reflection: calling GetReflection() on each
  // message costs a call_once in protobuf 3.21, so it is looked up once here.
  const Reflection* reflection = nullptr;
  // Every field has a kind this codec handles (nested types not considered).
  bool own_fields_supported = true;
  // This type and every type it reaches are handled here; false sends the
  // whole call to json_util.
  bool fast = false;
  // Ordered by field number, the order json_util prints in.
  std::vector<FieldInfo> fields;
  // json_name and proto name -> field, sorted by NameLess.
  std::vector<std::pair<absl::string_view, const FieldInfo*>> names;

  const FieldInfo* Find(absl::string_view name) const {
    auto it = std::lower_bound(
        names.begin(), names.end(), name,
        [](const std::pair<absl::string_view, const FieldInfo*>& entry,
           absl::string_view n) { return NameLess(entry.first, n); });
    if (it == names.end() || it->first != name) return nullptr;
    return it->second;
  }
};

// Reflection over google.protobuf.Timestamp's two fields.
struct TimestampFields {
  const Reflection* reflection;
  const FieldDescriptor* seconds;
  const FieldDescriptor* nanos;
};

const TimestampFields& Timestamp() {
  static const TimestampFields fields = [] {
    const Descriptor* d = google::protobuf::Timestamp::descriptor();
    return TimestampFields{
        google::protobuf::Timestamp::default_instance().GetReflection(),
        d->FindFieldByNumber(1), d->FindFieldByNumber(2)};
  }();
  return fields;
}

// Which kind a field has, or false when this codec leaves its type to
// json_util.
bool KindOf(const FieldDescriptor* field, Kind* kind) {
  if (field->is_map()) return false;
  switch (field->type()) {
    case FieldDescriptor::TYPE_STRING:
      *kind = Kind::kString;
      return true;
    case FieldDescriptor::TYPE_BOOL:
      *kind = Kind::kBool;
      return true;
    case FieldDescriptor::TYPE_INT32:
    case FieldDescriptor::TYPE_SINT32:
    case FieldDescriptor::TYPE_SFIXED32:
      *kind = Kind::kInt32;
      return true;
    case FieldDescriptor::TYPE_UINT32:
    case FieldDescriptor::TYPE_FIXED32:
      *kind = Kind::kUint32;
      return true;
    case FieldDescriptor::TYPE_INT64:
    case FieldDescriptor::TYPE_SINT64:
    case FieldDescriptor::TYPE_SFIXED64:
      *kind = Kind::kInt64;
      return true;
    case FieldDescriptor::TYPE_UINT64:
    case FieldDescriptor::TYPE_FIXED64:
      *kind = Kind::kUint64;
      return true;
    case FieldDescriptor::TYPE_ENUM:
      // Closed (proto2) enums reject unknown numbers; only open ones here.
      if (field->enum_type()->file()->syntax() !=
          FileDescriptor::SYNTAX_PROTO3) {
        return false;
      }
      *kind = Kind::kEnum;
      return true;
    case FieldDescriptor::TYPE_MESSAGE:
      *kind = field->message_type() == google::protobuf::Timestamp::descriptor()
                  ? Kind::kTimestamp
                  : Kind::kMessage;
      return true;
    default:
      return false;  // double, float, bytes, groups
  }
}

// The cache of MessageInfo, one per Descriptor of the generated pool (whose
// descriptors live as long as the process, so pointers to them are stable
// keys). Entries are never removed or changed once published. Lookups read a
// fixed open-addressing table of atomics, without locking; building and
// publishing take the mutex. It is a std::mutex, not an absl::Mutex, because
// Debian's Abseil is not built with TSan: every frame the gateway encodes
// passes through here, and TSan must see this lock to check the code around
// it (see .bazelrc).
class Registry {
 public:
  static Registry& Get() {
    static Registry* const registry = new Registry;
    return *registry;
  }

  // The description of `descriptor`, or nullptr for types outside the
  // generated pool (other pools, and their descriptors, may be freed, so
  // they are never cached).
  const MessageInfo* Find(const Descriptor* descriptor) {
    const size_t start = Hash(descriptor);
    for (size_t i = 0; i < kSlots; ++i) {
      const Slot& slot = slots_[(start + i) % kSlots];
      const Descriptor* key = slot.key.load(std::memory_order_acquire);
      if (key == descriptor) return slot.info.load(std::memory_order_relaxed);
      if (key == nullptr) break;
    }
    if (descriptor->file()->pool() != DescriptorPool::generated_pool()) {
      return nullptr;
    }
    std::lock_guard<std::mutex> lock(mu_);
    const MessageInfo* info = BuildLocked(descriptor);
    // Publish (info first, then the key that makes it visible). A full
    // table only means later lookups of this type take the mutex.
    for (size_t i = 0; i < kSlots; ++i) {
      Slot& slot = slots_[(start + i) % kSlots];
      const Descriptor* key = slot.key.load(std::memory_order_relaxed);
      if (key == descriptor) break;
      if (key == nullptr) {
        slot.info.store(info, std::memory_order_relaxed);
        slot.key.store(descriptor, std::memory_order_release);
        break;
      }
    }
    return info;
  }

 private:
  static constexpr size_t kSlots = 1024;

  struct Slot {
    std::atomic<const Descriptor*> key{nullptr};
    std::atomic<const MessageInfo*> info{nullptr};
  };

  static size_t Hash(const Descriptor* descriptor) {
    return (reinterpret_cast<uintptr_t>(descriptor) >> 4) % kSlots;
  }

  Registry() = default;

  // Called with mu_ held.
  const MessageInfo* BuildLocked(const Descriptor* descriptor) {
    auto it = infos_.find(descriptor);
    if (it != infos_.end()) return it->second.get();
    std::vector<MessageInfo*> created;
    const MessageInfo* root = CreateLocked(descriptor, &created);
    // A type is fast when it and everything it reaches is supported. Types
    // may refer to each other in cycles, so settle it as a fixed point over
    // the types created now (earlier ones are already settled).
    for (MessageInfo* info : created) info->fast = info->own_fields_supported;
    for (bool changed = true; changed;) {
      changed = false;
      for (MessageInfo* info : created) {
        if (!info->fast) continue;
        for (const FieldInfo& field : info->fields) {
          if (field.message != nullptr && !field.message->fast) {
            info->fast = false;
            changed = true;
            break;
          }
        }
      }
    }
    return root;
  }

  // Called with mu_ held.
  MessageInfo* CreateLocked(const Descriptor* descriptor,
                            std::vector<MessageInfo*>* created) {
    auto it = infos_.find(descriptor);
    if (it != infos_.end()) return it->second.get();
    auto owned = std::make_unique<MessageInfo>();
    MessageInfo* info = owned.get();
    infos_.emplace(descriptor, std::move(owned));
    created->push_back(info);
    info->descriptor = descriptor;
    const Message* prototype =
        MessageFactory::generated_factory()->GetPrototype(descriptor);
    // Well-known types have their own JSON forms (a Timestamp is handled as
    // a field kind, not as a message).
    if (prototype == nullptr ||
        descriptor->file()->syntax() != FileDescriptor::SYNTAX_PROTO3 ||
        descriptor->file()->package() == "google.protobuf" ||
        descriptor->extension_range_count() > 0) {
      info->own_fields_supported = false;
      return info;
    }
    info->reflection = prototype->GetReflection();
    std::vector<const FieldDescriptor*> by_number;
    for (int i = 0; i < descriptor->field_count(); ++i) {
      by_number.push_back(descriptor->field(i));
    }
    std::sort(by_number.begin(), by_number.end(),
              [](const FieldDescriptor* a, const FieldDescriptor* b) {
                return a->number() < b->number();
              });
    info->fields.resize(by_number.size());
    for (size_t i = 0; i < by_number.size(); ++i) {
      FieldInfo& field = info->fields[i];
      field.field = by_number[i];
      field.repeated = field.field->is_repeated();
      field.in_oneof = field.field->containing_oneof() != nullptr;
      field.index = static_cast<int>(i);
      std::string key;
      if (!KindOf(field.field, &field.kind) ||
          !AppendEscaped(field.field->json_name(), &key)) {
        info->own_fields_supported = false;
        return info;
      }
      field.key = std::move(key) + ":";
    }
    // json_util looks a name up as a json_name first, then as a field name.
    for (const FieldInfo& field : info->fields) {
      info->names.emplace_back(field.field->json_name(), &field);
    }
    for (const FieldInfo& field : info->fields) {
      const std::string& name = field.field->name();
      bool taken = false;
      for (const auto& entry : info->names) taken |= entry.first == name;
      if (!taken) info->names.emplace_back(name, &field);
    }
    std::sort(info->names.begin(), info->names.end(),
              [](const std::pair<absl::string_view, const FieldInfo*>& a,
                 const std::pair<absl::string_view, const FieldInfo*>& b) {
                return NameLess(a.first, b.first);
              });
    for (FieldInfo& field : info->fields) {
      if (field.kind == Kind::kMessage) {
        field.message = CreateLocked(field.field->message_type(), created);
      }
    }
    return info;
  }

  Slot slots_[kSlots];
  std::mutex mu_;
  // Every description built, reachable or not from slots_; guarded by mu_.
  std::unordered_map<const Descriptor*, std::unique_ptr<MessageInfo>> infos_;
};

// The description to use for `message`, or nullptr when the call goes to
// json_util. The reflection check keeps out DynamicMessages of generated
// types, whose reflection is not the generated class's.
const MessageInfo* FastInfo(const Message& message) {
  const MessageInfo* info = Registry::Get().Find(message.GetDescriptor());
  if (info == nullptr || !info->fast ||
      info->reflection != message.GetReflection()) {
    return nullptr;
  }
  return info;
}

// ---------------------------------------------------------------------------
// UTF-8 and string escaping.

// Decodes the strictly valid UTF-8 sequence at `p` (no overlong forms, no
// surrogates, nothing above U+10FFFF) that starts with a byte >= 0x80.
// Returns its length, or 0 if invalid.
int DecodeUtf8(const unsigned char* p, const unsigned char* end, uint32_t* cp) {
  const unsigned char c = p[0];
  auto cont = [&](int i) { return end - p > i && (p[i] & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) {
    if (!cont(1)) return 0;
    *cp = ((c & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    *cp = ((c & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    if (*cp < 0x800 || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    *cp = ((c & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) |
          (p[3] & 0x3Fu);
    if (*cp < 0x10000 || *cp > 0x10FFFF) return 0;
    return 4;
  }
  return 0;
}

bool IsValidUtf8(absl::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // Eight ASCII bytes at a time: most text is ASCII.
    uint64_t word;
    if (end - p >= 8 &&
        (std::memcpy(&word, p, 8), (word & 0x8080808080808080u) == 0)) {
      p += 8;
      continue;
    }
    if (*p < 0x80) {
      ++p;
      continue;
    }
    uint32_t cp;
    const int n = DecodeUtf8(p, end, &cp);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

// What protobuf 3.21's JsonEscaping writes for each ASCII character: nullptr
// when the character is written as is.
struct AsciiEscapes {
  const char* escape[128] = {};
  AsciiEscapes() {
    static const char* const kControl[32] = {
        "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005",
        "\\u0006", "\\u0007", "\\b",     "\\t",     "\\n",     "\\u000b",
        "\\f",     "\\r",     "\\u000e", "\\u000f", "\\u0010", "\\u0011",
        "\\u0012", "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017",
        "\\u0018", "\\u0019", "\\u001a", "\\u001b", "\\u001c", "\\u001d",
        "\\u001e", "\\u001f"};
    for (int c = 0; c < 32; ++c) escape[c] = kControl[c];
    escape[static_cast<int>('"')] = "\\\"";
    escape[static_cast<int>('\\')] = "\\\\";
    // protobuf escapes these for HTML safety; '&' and '/' it leaves alone.
    escape[static_cast<int>('<')] = "\\u003c";
    escape[static_cast<int>('>')] = "\\u003e";
    escape[0x7F] = "\\u007f";
  }
};

const AsciiEscapes& Ascii() {
  static const AsciiEscapes* const escapes = new AsciiEscapes;
  return *escapes;
}

// The non-ASCII code points protobuf 3.21 writes as \u escapes: C1 controls
// and the invisible or direction-changing characters its JsonEscaping lists.
bool NeedsEscape(uint32_t cp) {
  if (cp < 0xA0) return true;  // C1 controls (U+0080-U+009F)
  switch (cp) {
    case 0x00AD:
    case 0x06DD:
    case 0x070F:
    case 0x17B4:
    case 0x17B5:
    case 0xFEFF:
    case 0xFFF9:
    case 0xFFFA:
    case 0xFFFB:
    case 0xE0001:
      return true;
    default:
      return (cp >= 0x0600 && cp <= 0x0603) || (cp >= 0x200B && cp <= 0x200F) ||
             (cp >= 0x2028 && cp <= 0x202E) || (cp >= 0x2060 && cp <= 0x2064) ||
             (cp >= 0x206A && cp <= 0x206F) ||
             (cp >= 0x1D173 && cp <= 0x1D17A) ||
             (cp >= 0xE0020 && cp <= 0xE007F);
  }
}

void AppendUnit(uint32_t unit, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  const char buf[6] = {'\\',
                       'u',
                       kHex[(unit >> 12) & 0xF],
                       kHex[(unit >> 8) & 0xF],
                       kHex[(unit >> 4) & 0xF],
                       kHex[unit & 0xF]};
  out->append(buf, sizeof(buf));
}

// Appends `s` as a quoted JSON string escaped exactly as protobuf 3.21 does.
// Returns false if `s` is not valid UTF-8 (json_util drops such bytes; the
// caller then hands the message to it so that the output stays its output).
bool AppendEscaped(absl::string_view s, std::string* out) {
  const AsciiEscapes& ascii = Ascii();
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  const auto* run = p;  // start of the bytes not yet copied
  out->push_back('"');
  while (p < end) {
    if (*p < 0x80) {
      const char* escape = ascii.escape[*p];
      if (escape != nullptr) {
        out->append(reinterpret_cast<const char*>(run), p - run);
        out->append(escape);
        run = p + 1;
      }
      ++p;
      continue;
    }
    uint32_t cp;
    const int n = DecodeUtf8(p, end, &cp);
    if (n == 0) return false;
    if (NeedsEscape(cp)) {
      out->append(reinterpret_cast<const char*>(run), p - run);
      if (cp < 0x10000) {
        AppendUnit(cp, out);
      } else {
        AppendUnit(0xD800 + ((cp - 0x10000) >> 10), out);
        AppendUnit(0xDC00 + ((cp - 0x10000) & 0x3FF), out);
      }
      run = p + n;
    }
    p += n;
  }
  out->append(reinterpret_cast<const char*>(run), p - run);
  out->push_back('"');
  return true;
}

// ---------------------------------------------------------------------------
// Timestamps.

// protobuf's printable range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;

// Days from 1970-01-01 to a date of the proleptic Gregorian calendar, and
// back (H. Hinnant's days_from_civil and civil_from_days).
int64_t DaysFromCivil(int64_t year, int64_t month, int64_t day) {
  year -= month <= 2 ? 1 : 0;
  const int64_t era = (year >= 0 ? year : year - 399) / 400;
  const int64_t yoe = year - era * 400;
  const int64_t doy =
      (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

void CivilFromDays(int64_t days, int64_t* year, int64_t* month, int64_t* day) {
  const int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *day = doy - (153 * mp + 2) / 5 + 1;
  *month = mp < 10 ? mp + 3 : mp - 9;
  *year = yoe + era * 400 + (*month <= 2 ? 1 : 0);
}

// Appends the quoted RFC 3339 form protobuf prints (its FormatTime): UTC
// with 'Z' and 0, 3, 6 or 9 fractional digits. False when json_util would
// refuse to print it.
bool AppendTimestamp(int64_t seconds, int32_t nanos, std::string* out) {
  if (seconds < kMinTimestampSeconds || seconds > kMaxTimestampSeconds ||
      nanos < 0 || nanos >= 1000000000) {
    return false;
  }
  int64_t days = seconds / 86400;
  int64_t secs = seconds % 86400;
  if (secs < 0) {
    secs += 86400;
    --days;
  }
  int64_t year, month, day;
  CivilFromDays(days, &year, &month, &day);
  char buf[32];
  auto put = [&buf](int at, int64_t value, int width) {
    for (int i = width - 1; i >= 0; --i) {
      buf[at + i] = static_cast<char>('0' + value % 10);
      value /= 10;
    }
  };
  buf[0] = '"';
  put(1, year, 4);
  buf[5] = '-';
  put(6, month, 2);
  buf[8] = '-';
  put(9, day, 2);
  buf[11] = 'T';
  put(12, secs / 3600, 2);
  buf[14] = ':';
  put(15, secs / 60 % 60, 2);
  buf[17] = ':';
  put(18, secs % 60, 2);
  int len = 20;
  if (nanos != 0) {
    buf[len++] = '.';
    if (nanos % 1000000 == 0) {
      put(len, nanos / 1000000, 3);
      len += 3;
    } else if (nanos % 1000 == 0) {
      put(len, nanos / 1000, 6);
      len += 6;
    } else {
      put(len, nanos, 9);
      len += 9;
    }
  }
  buf[len++] = 'Z';
  buf[len++] = '"';
  out->append(buf, len);
  return true;
}

// Reads the timestamp forms json_util accepts, which are those of protobuf
// 3.21's internal ParseTime: "Y-M-DTh:m:s[.fraction](Z|+hh:mm|-hh:mm)" where
// each number may have fewer digits than usual (at least one; years 1-9999),
// any number of fraction digits of which the first 9 count, and the date and
// time validated before the offset is applied (so the result may lie outside
// the printable range, as it does with json_util). ParseTime reads a
// NUL-terminated copy, so an embedded NUL ends the input there.
//
// TimeUtil::FromString is the same parser, but it CHECK-fails (aborts the
// process) when an offset moves the result out of range, as for
// "0001-01-01T00:00:00+01:00", which json_util accepts.
bool ParseTimestamp(absl::string_view s, int64_t* seconds, int32_t* nanos) {
  size_t pos = 0;
  auto peek = [&]() -> char { return pos < s.size() ? s[pos] : '\0'; };
  auto digit = [&]() { return peek() >= '0' && peek() <= '9'; };
  auto number = [&](int width, int min, int max, int* out) {
    if (!digit()) return false;
    int value = 0;
    for (int i = 0; i < width && digit(); ++i) {
      value = value * 10 + (s[pos++] - '0');
    }
    *out = value;
    return value >= min && value <= max;
  };
  auto expect = [&](char c) {
    if (peek() != c) return false;
    ++pos;
    return true;
  };
  int year, month, day, hour, minute, second;
  if (!number(4, 1, 9999, &year) || !expect('-') || !number(2, 1, 12, &month) ||
      !expect('-') || !number(2, 1, 31, &day) || !expect('T') ||
      !number(2, 0, 23, &hour) || !expect(':') || !number(2, 0, 59, &minute) ||
      !expect(':') || !number(2, 0, 59, &second)) {
    return false;
  }
  static constexpr int kDaysInMonth[13] = {0,  31, 28, 31, 30, 31, 30,
                                           31, 31, 30, 31, 30, 31};
  const bool leap = year % 400 == 0 || (year % 4 == 0 && year % 100 != 0);
  if (day > kDaysInMonth[month] + (month == 2 && leap ? 1 : 0)) return false;
  *seconds = DaysFromCivil(year, month, day) * 86400 + hour * 3600 +
             minute * 60 + second;
  *nanos = 0;
  if (expect('.')) {
    if (!digit()) return false;
    int value = 0;
    int len = 0;
    for (; digit(); ++pos, ++len) {
      if (len < 9) value = value * 10 + (s[pos] - '0');
    }
    for (; len < 9; ++len) value *= 10;
    *nanos = value;
  }
  if (!expect('Z')) {
    const char sign = peek();
    if (sign != '+' && sign != '-') return false;
    ++pos;
    int offset_hours, offset_minutes;
    if (!number(2, 0, 23, &offset_hours) || !expect(':') ||
        !number(2, 0, 59, &offset_minutes)) {
      return false;
    }
    const int64_t offset = (offset_hours * 60 + offset_minutes) * 60;
    *seconds += sign == '+' ? -offset : offset;
  }
  return peek() == '\0';
}

// ---------------------------------------------------------------------------
// Printing.

bool PrintMessage(const Message& message, const MessageInfo& info,
                  std::string* out);

bool PrintTimestamp(const Message& timestamp, std::string* out) {
  const TimestampFields& ts = Timestamp();
  return AppendTimestamp(ts.reflection->GetInt64(timestamp, ts.seconds),
                         ts.reflection->GetInt32(timestamp, ts.nanos), out);
}

void AppendEnum(const FieldDescriptor* field, int number, std::string* out) {
  const EnumValueDescriptor* value =
      field->enum_type()->FindValueByNumber(number);
  if (value != nullptr) {
    out->push_back('"');
    out->append(value->name());  // enum value names are identifiers
    out->push_back('"');
  } else {
    absl::StrAppend(out, number);
  }
}

// One element of a repeated field.
bool PrintElement(const Message& message, const Reflection* r,
                  const FieldInfo& f, int i, std::string* out) {
  const FieldDescriptor* fd = f.field;
  switch (f.kind) {
    case Kind::kString: {
      std::string scratch;
      return AppendEscaped(
          r->GetRepeatedStringReference(message, fd, i, &scratch), out);
    }
    case Kind::kBool:
      out->append(r->GetRepeatedBool(message, fd, i) ? "true" : "false");
      return true;
    case Kind::kInt32:
      absl::StrAppend(out, r->GetRepeatedInt32(message, fd, i));
      return true;
    case Kind::kUint32:
      absl::StrAppend(out, r->GetRepeatedUInt32(message, fd, i));
      return true;
    case Kind::kInt64:
      absl::StrAppend(out, "\"", r->GetRepeatedInt64(message, fd, i), "\"");
      return true;
    case Kind::kUint64:
      absl::StrAppend(out, "\"", r->GetRepeatedUInt64(message, fd, i), "\"");
      return true;
    case Kind::kEnum:
      AppendEnum(fd, r->GetRepeatedEnumValue(message, fd, i), out);
      return true;
    case Kind::kMessage:
      return PrintMessage(r->GetRepeatedMessage(message, fd, i), *f.message,
                          out);
    case Kind::kTimestamp:
      return PrintTimestamp(r->GetRepeatedMessage(message, fd, i), out);
  }
  return false;
}

// The value of a singular field, after its key. Sets `*omitted` for a
// default value, which proto3 JSON leaves out (except for the member of a
// oneof that is set, which the caller has checked is present).
bool PrintSingular(const Message& message, const Reflection* r,
                   const FieldInfo& f, bool* omitted, std::string* out) {
  const FieldDescriptor* fd = f.field;
  switch (f.kind) {
    case Kind::kString: {
      std::string scratch;
      const std::string& value = r->GetStringReference(message, fd, &scratch);
      *omitted = value.empty() && !f.in_oneof;
      return *omitted || AppendEscaped(value, out);
    }
    case Kind::kBool: {
      const bool value = r->GetBool(message, fd);
      *omitted = !value && !f.in_oneof;
      out->append(value ? "true" : "false");
      return true;
    }
    case Kind::kInt32: {
      const int32_t value = r->GetInt32(message, fd);
      *omitted = value == 0 && !f.in_oneof;
      absl::StrAppend(out, value);
      return true;
    }
    case Kind::kUint32: {
      const uint32_t value = r->GetUInt32(message, fd);
      *omitted = value == 0 && !f.in_oneof;
      absl::StrAppend(out, value);
      return true;
    }
    case Kind::kInt64: {
      const int64_t value = r->GetInt64(message, fd);
      *omitted = value == 0 && !f.in_oneof;
      absl::StrAppend(out, "\"", value, "\"");
      return true;
    }
    case Kind::kUint64: {
      const uint64_t value = r->GetUInt64(message, fd);
      *omitted = value == 0 && !f.in_oneof;
      absl::StrAppend(out, "\"", value, "\"");
      return true;
    }
    case Kind::kEnum: {
      const int value = r->GetEnumValue(message, fd);
      *omitted = value == 0 && !f.in_oneof;
      AppendEnum(fd, value, out);
      return true;
    }
    case Kind::kMessage:
      return PrintMessage(r->GetMessage(message, fd), *f.message, out);
    case Kind::kTimestamp:
      return PrintTimestamp(r->GetMessage(message, fd), out);
  }
  return false;
}

// Prints `message` as an object. False if json_util would report an error
// for it (then nothing this printed is used).
bool PrintMessage(const Message& message, const MessageInfo& info,
                  std::string* out) {
  const Reflection* r = info.reflection;
  out->push_back('{');
  bool first = true;
  for (const FieldInfo& f : info.fields) {
    const FieldDescriptor* fd = f.field;
    int size = 0;
    if (f.repeated) {
      size = r->FieldSize(message, fd);
      if (size == 0) continue;
    } else if ((f.in_oneof || f.kind == Kind::kMessage ||
                f.kind == Kind::kTimestamp) &&
               !r->HasField(message, fd)) {
      continue;
    }
    const size_t mark = out->size();
    if (!first) out->push_back(',');
    out->append(f.key);
    if (f.repeated) {
      out->push_back('[');
      for (int i = 0; i < size; ++i) {
        if (i > 0) out->push_back(',');
        if (!PrintElement(message, r, f, i, out)) return false;
      }
      out->push_back(']');
    } else {
      bool omitted = false;
      if (!PrintSingular(message, r, f, &omitted, out)) return false;
      if (omitted) {
        out->resize(mark);
        continue;
      }
    }
    first = false;
  }
  out->push_back('}');
  return true;
}

// ---------------------------------------------------------------------------
// Parsing: RapidJSON's SAX reader drives a handler that fills the message as
// the events arrive, with no document tree in between.

// At most this many objects nested: RapidJSON's reader recurses once per
// level, and the handler refuses deeper input before it recurses further
// (json_util, which allows more, then decides).
constexpr int kMaxDepth = 32;

// A set of field indexes, without heap allocation for up to 64 fields.
class FieldSet {
 public:
  void Reset(size_t size) {
    small_ = 0;
    large_.assign(size > 64 ? size : 0, false);
  }
  // Adds `index`; false if it was there already.
  bool Insert(int index) {
    if (large_.empty()) {
      const uint64_t bit = uint64_t{1} << index;
      if ((small_ & bit) != 0) return false;
      small_ |= bit;
      return true;
    }
    if (large_[index]) return false;
    large_[index] = true;
    return true;
  }

 private:
  uint64_t small_ = 0;
  std::vector<bool> large_;
};

// A JSON integer as RapidJSON reports it: a sign and a magnitude, so that
// every range check is exact.
struct Integer {
  bool negative;
  uint64_t magnitude;
};

template <typename T>
bool Narrow(const Integer& n, T* out) {
  if (n.negative) {
    if (!std::numeric_limits<T>::is_signed) return false;
    // The magnitude of the most negative T is its max + 1.
    const uint64_t limit =
        static_cast<uint64_t>(std::numeric_limits<T>::max()) + 1;
    if (n.magnitude > limit) return false;
    *out = static_cast<T>(0 - n.magnitude);
    return true;
  }
  if (n.magnitude > static_cast<uint64_t>(std::numeric_limits<T>::max())) {
    return false;
  }
  *out = static_cast<T>(n.magnitude);
  return true;
}

// An integer given as a string: only the plain decimal form ("42", "-7") is
// taken here; json_util's other spellings ("+7", "007") go to json_util.
template <typename T>
bool ParseDecimal(absl::string_view s, T* out) {
  absl::string_view digits = s;
  if (!digits.empty() && digits[0] == '-') digits.remove_prefix(1);
  // No leading zeros, and no "-0" (json_util rejects it for unsigned types).
  if (digits.empty() || (digits[0] == '0' && s.size() > 1)) return false;
  for (char c : digits) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(s, out);
}

constexpr absl::string_view TypeName(Kind kind) {
  switch (kind) {
    case Kind::kString:
      return "a string";
    case Kind::kBool:
      return "true or false";
    case Kind::kInt32:
      return "an int32 (number or decimal string)";
    case Kind::kUint32:
      return "a uint32 (number or decimal string)";
    case Kind::kInt64:
      return "an int64 (number or decimal string)";
    case Kind::kUint64:
      return "a uint64 (number or decimal string)";
    case Kind::kEnum:
      return "an enum value name or number";
    case Kind::kMessage:
      return "an object";
    case Kind::kTimestamp:
      return "an RFC 3339 timestamp string";
  }
  return "a value";
}

class Handler {
 public:
  Handler(const MessageInfo& root, Message* out) : root_(root), out_(out) {}

  const absl::Status& status() const { return status_; }

  // The RapidJSON SAX interface; false stops the parse (status() says why).
  bool Null() {
    Frame* top = Top();
    if (top == nullptr) return NotAnObject("null");
    if (top->in_array) return Fail("null in a list");
    top->field = nullptr;  // null means "not given"
    return true;
  }
  bool Bool(bool b) {
    const FieldInfo* f = BeginScalar("a bool");
    if (f == nullptr) return false;
    if (f->kind != Kind::kBool) return Mismatch(*f, "a bool");
    Frame& top = stack_[depth_ - 1];
    const Reflection* r = top.info->reflection;
    if (f->repeated) {
      r->AddBool(top.message, f->field, b);
    } else {
      r->SetBool(top.message, f->field, b);
    }
    return EndScalar();
  }
  bool Int(int i) { return Number(Integer{i < 0, Magnitude(i)}); }
  bool Uint(unsigned u) { return Number(Integer{false, u}); }
  bool Int64(int64_t i) { return Number(Integer{i < 0, Magnitude(i)}); }
  bool Uint64(uint64_t u) { return Number(Integer{false, u}); }
  bool Double(double) {
    // json_util takes 1.0 or 1e2 for an integer; it decides (see header).
    const FieldInfo* f = BeginScalar("a number");
    if (f == nullptr) return false;
    return Fail(absl::StrCat("expected ", TypeName(f->kind),
                             ", got a number with a fraction or exponent"));
  }
  bool RawNumber(const char*, rapidjson::SizeType, bool) { return false; }
  bool String(const char* str, rapidjson::SizeType length, bool) {
    const absl::string_view s(str, length);
    const FieldInfo* f = BeginScalar("a string");
    if (f == nullptr) return false;
    Frame& top = stack_[depth_ - 1];
    const Reflection* r = top.info->reflection;
    Message* m = top.message;
    const FieldDescriptor* fd = f->field;
    switch (f->kind) {
      case Kind::kString:
        if (!IsValidUtf8(s)) return Fail("string is not UTF-8");
        if (f->repeated) {
          r->AddString(m, fd, std::string(s));
        } else {
          r->SetString(m, fd, std::string(s));
        }
        return EndScalar();
      case Kind::kInt32:
        return DecimalString<int32_t>(*f, s);
      case Kind::kUint32:
        return DecimalString<uint32_t>(*f, s);
      case Kind::kInt64:
        return DecimalString<int64_t>(*f, s);
      case Kind::kUint64:
        return DecimalString<uint64_t>(*f, s);
      case Kind::kEnum: {
        const EnumValueDescriptor* value =
            fd->enum_type()->FindValueByName(std::string(s));
        if (value == nullptr) {
          return Fail(absl::StrCat("\"", s, "\" is not a value of ",
                                   fd->enum_type()->full_name()));
        }
        return SetEnum(*f, value->number());
      }
      case Kind::kTimestamp: {
        if (!IsValidUtf8(s)) return Fail("string is not UTF-8");
        int64_t seconds;
        int32_t nanos;
        if (!ParseTimestamp(s, &seconds, &nanos)) {
          return Fail(absl::StrCat("\"", s,
                                   "\" is not an RFC 3339 timestamp (like "
                                   "2024-05-01T12:00:00Z)"));
        }
        Message* ts =
            f->repeated ? r->AddMessage(m, fd) : r->MutableMessage(m, fd);
        const TimestampFields& tf = Timestamp();
        tf.reflection->SetInt64(ts, tf.seconds, seconds);
        tf.reflection->SetInt32(ts, tf.nanos, nanos);
        return EndScalar();
      }
      default:
        return Mismatch(*f, "a string");
    }
  }
  bool StartObject() {
    if (depth_ == 0) {
      Push(root_, out_);
      return true;
    }
    const FieldInfo* f = BeginScalar("an object");
    if (f == nullptr) return false;
    if (f->kind != Kind::kMessage) return Mismatch(*f, "an object");
    if (depth_ == kMaxDepth) {
      return Fail(absl::StrCat("nested more than ", kMaxDepth, " deep"));
    }
    Frame& top = stack_[depth_ - 1];
    const Reflection* r = top.info->reflection;
    Message* child = f->repeated ? r->AddMessage(top.message, f->field)
                                 : r->MutableMessage(top.message, f->field);
    Push(*f->message, child);
    return true;
  }
  bool Key(const char* str, rapidjson::SizeType length, bool) {
    Frame& top = stack_[depth_ - 1];
    const absl::string_view name(str, length);
    top.field = top.info->Find(name);
    if (top.field == nullptr) {
      return Fail(
          absl::StrCat("no such field in ", top.info->descriptor->full_name()),
          name);
    }
    return true;
  }
  bool EndObject(rapidjson::SizeType) {
    --depth_;
    return depth_ == 0 || EndScalar();
  }
  bool StartArray() {
    Frame* top = Top();
    if (top == nullptr) return NotAnObject("an array");
    if (top->in_array) return Fail("a list inside a list");
    const FieldInfo* f = top->field;
    if (!f->repeated) return Mismatch(*f, "an array");
    if (!Take(*top, *f)) return false;
    top->in_array = true;
    top->index = 0;
    return true;
  }
  bool EndArray(rapidjson::SizeType) {
    Frame& top = stack_[depth_ - 1];
    top.in_array = false;
    top.field = nullptr;
    return true;
  }

 private:
  struct Frame {
    const MessageInfo* info;
    Message* message;
    // The member being read (set by Key), and where in its list.
    const FieldInfo* field;
    bool in_array;
    int index;
    FieldSet seen;
  };

  template <typename T>
  static uint64_t Magnitude(T i) {
    return i < 0 ? 0 - static_cast<uint64_t>(i) : static_cast<uint64_t>(i);
  }

  Frame* Top() { return depth_ == 0 ? nullptr : &stack_[depth_ - 1]; }

  void Push(const MessageInfo& info, Message* message) {
    Frame& frame = stack_[depth_++];
    frame.info = &info;
    frame.message = message;
    frame.field = nullptr;
    frame.in_array = false;
    frame.index = 0;
    frame.seen.Reset(info.fields.size());
  }

  // Marks the field of `frame` as given, refusing a second time and a
  // second member of a oneof. json_util lets a later member override or
  // merge into an earlier one; it decides on such (rare) input.
  bool Take(Frame& frame, const FieldInfo& f) {
    if (!frame.seen.Insert(f.index)) return Fail("given more than once");
    if (f.in_oneof) {
      const auto* oneof = f.field->containing_oneof();
      const Reflection* r = frame.info->reflection;
      if (r->HasOneof(*frame.message, oneof)) {
        return Fail(absl::StrCat(
            "oneof ", oneof->name(), " already has ",
            r->GetOneofFieldDescriptor(*frame.message, oneof)->json_name(),
            "; give only one of its fields"));
      }
    }
    return true;
  }

  // The field a non-null value (or object) is for, claimed; nullptr after
  // failing.
  const FieldInfo* BeginScalar(absl::string_view what) {
    Frame* top = Top();
    if (top == nullptr) {
      NotAnObject(what);
      return nullptr;
    }
    const FieldInfo* f = top->field;
    if (!top->in_array) {
      if (f->repeated) {
        Fail(absl::StrCat("expected a list, got ", what));
        return nullptr;
      }
      if (!Take(*top, *f)) return nullptr;
    }
    return f;
  }

  // After a value: the next array element, or the next member.
  bool EndScalar() {
    Frame& top = stack_[depth_ - 1];
    if (top.in_array) {
      ++top.index;
    } else {
      top.field = nullptr;
    }
    return true;
  }

  bool Number(const Integer& n) {
    const FieldInfo* f = BeginScalar("a number");
    if (f == nullptr) return false;
    switch (f->kind) {
      case Kind::kInt32:
        return NumberInRange<int32_t>(*f, n);
      case Kind::kUint32:
        return NumberInRange<uint32_t>(*f, n);
      case Kind::kInt64:
        return NumberInRange<int64_t>(*f, n);
      case Kind::kUint64:
        return NumberInRange<uint64_t>(*f, n);
      case Kind::kEnum: {
        int32_t number;  // open enum: unknown numbers are kept
        if (!Narrow(n, &number)) return Fail("enum number out of range");
        return SetEnum(*f, number);
      }
      default:
        return Mismatch(*f, "a number");
    }
  }

  template <typename T>
  bool NumberInRange(const FieldInfo& f, const Integer& n) {
    T value;
    if (!Narrow(n, &value)) {
      return Fail(absl::StrCat(n.negative ? "-" : "", n.magnitude,
                               " is out of range for ", TypeName(f.kind)));
    }
    return SetInteger(f, value);
  }

  template <typename T>
  bool DecimalString(const FieldInfo& f, absl::string_view s) {
    T value;
    if (!ParseDecimal(s, &value)) {
      return Fail(absl::StrCat("\"", s, "\" is not ", TypeName(f.kind)));
    }
    return SetInteger(f, value);
  }

  template <typename T>
  bool SetInteger(const FieldInfo& f, T value) {
    Frame& top = stack_[depth_ - 1];
    const Reflection* r = top.info->reflection;
    Message* m = top.message;
    const FieldDescriptor* fd = f.field;
    if constexpr (std::is_same<T, int32_t>::value) {
      f.repeated ? r->AddInt32(m, fd, value) : r->SetInt32(m, fd, value);
    } else if constexpr (std::is_same<T, uint32_t>::value) {
      f.repeated ? r->AddUInt32(m, fd, value) : r->SetUInt32(m, fd, value);
    } else if constexpr (std::is_same<T, int64_t>::value) {
      f.repeated ? r->AddInt64(m, fd, value) : r->SetInt64(m, fd, value);
    } else {
      f.repeated ? r->AddUInt64(m, fd, value) : r->SetUInt64(m, fd, value);
    }
    return EndScalar();
  }

  bool SetEnum(const FieldInfo& f, int number) {
    Frame& top = stack_[depth_ - 1];
    const Reflection* r = top.info->reflection;
    if (f.repeated) {
      r->AddEnumValue(top.message, f.field, number);
    } else {
      r->SetEnumValue(top.message, f.field, number);
    }
    return EndScalar();
  }

  bool Mismatch(const FieldInfo& f, absl::string_view got) {
    return Fail(absl::StrCat("expected ", TypeName(f.kind), ", got ", got));
  }

  bool NotAnObject(absl::string_view got) {
    status_ = absl::InvalidArgumentError(
        absl::StrCat("expected a JSON object, got ", got));
    return false;
  }

  // Fails with "field <path>: <reason>", the path naming the member being
  // read in each enclosing object by its json_name (plus `last`, a member
  // that names no field).
  bool Fail(absl::string_view reason, absl::string_view last = {}) {
    std::string message = "field ";
    bool first = true;
    for (int i = 0; i < depth_; ++i) {
      const Frame& frame = stack_[i];
      if (frame.field == nullptr) break;
      if (!first) message.push_back('.');
      first = false;
      message.append(frame.field->field->json_name());
      if (frame.in_array) absl::StrAppend(&message, "[", frame.index, "]");
    }
    if (!last.empty()) {
      if (!first) message.push_back('.');
      message.append(last.data(), last.size());
    }
    absl::StrAppend(&message, ": ", reason);
    status_ = absl::InvalidArgumentError(message);
    return false;
  }

  const MessageInfo& root_;
  Message* const out_;
  Frame stack_[kMaxDepth];
  int depth_ = 0;
  absl::Status status_;
};

absl::Status FastParse(absl::string_view json, const MessageInfo& info,
                       Message* out) {
  // RapidJSON parses fastest in place: strings are unescaped where they are,
  // and the handler gets pointers into the copy. Frames of the protocol fit
  // the local buffer; larger input takes one allocation.
  char local[4096];
  std::unique_ptr<char[]> heap;
  char* copy = local;
  if (json.size() >= sizeof(local)) {
    heap.reset(new char[json.size() + 1]);
    copy = heap.get();
  }
  std::memcpy(copy, json.data(), json.size());
  copy[json.size()] = '\0';
  // In-situ parsing needs no scratch stack for strings; what little the
  // reader keeps stays in a local buffer too.
  char scratch[256];
  rapidjson::MemoryPoolAllocator<> allocator(scratch, sizeof(scratch));
  rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>,
                           rapidjson::MemoryPoolAllocator<>>
      reader(&allocator, 64);
  rapidjson::InsituStringStream stream(copy);
  Handler handler(info, out);
  const rapidjson::ParseResult result =
      reader.Parse<rapidjson::kParseInsituFlag>(stream, handler);
  if (!handler.status().ok()) return handler.status();
  if (result.IsError()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not valid JSON at offset ", result.Offset(), ": ",
                     rapidjson::GetParseError_En(result.Code())));
  }
  // The copy is NUL-terminated, so RapidJSON takes a NUL byte in the input
  // for its end.
  if (stream.Tell() != json.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not valid JSON at offset ", stream.Tell(), ": unexpected NUL byte"));
  }
  return absl::OkStatus();
}

absl::Status ProtobufParse(absl::string_view json, Message* out) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), out, options);
  if (status.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(status.message()));
}

}  // namespace

absl::Status JsonToMessage(absl::string_view json, Message* out) {
  out->Clear();
  const MessageInfo* info = FastInfo(*out);
  if (info == nullptr) {
    absl::Status status = ProtobufParse(json, out);
    if (!status.ok()) out->Clear();
    return status;
  }
  absl::Status status = FastParse(json, *info, out);
  if (status.ok()) return status;
  // json_util accepts more spellings than the fast path (see the header):
  // it decides whether the input is valid after all.
  out->Clear();
  if (ProtobufParse(json, out).ok()) return absl::OkStatus();
  out->Clear();
  return status;
}

std::string MessageToJson(const Message& message) {
  std::string out;
  if (const MessageInfo* info = FastInfo(message)) {
    out.reserve(256);
    if (PrintMessage(message, *info, &out)) return out;
    out.clear();
  }
  // json_util reports an error for what the fast path refuses to print; its
  // output is whatever it wrote before the error, as it always was.
  (void)google::protobuf::util::MessageToJsonString(message, &out);
  return out;
}

}  // namespace parley
