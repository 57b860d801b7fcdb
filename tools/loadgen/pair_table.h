// PairTable: the raw relay's routing logic, apart from websocketpp. Two
// connections that give the same pair key are each other's peer; a third is
// refused; when one leaves, the other stays and waits for a new peer.
//
// A client's handshake completes before the relay has run its open handler, so
// a client that sent as soon as it was open could lose its first frames to a
// peer the relay had not registered yet. The relay therefore sends
// kRelayPairedNotice to both members once a pair is complete, and clients send
// only after it.
//
// Thread-compatible; the relay uses it from its single I/O thread.
#ifndef PARLEY_TOOLS_LOADGEN_PAIR_TABLE_H_
#define PARLEY_TOOLS_LOADGEN_PAIR_TABLE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace parley::loadgen {

// The relay's one own frame: "your pair is complete, frames will reach the
// peer from now on".
inline constexpr char kRelayPairedNotice[] = "relay.paired";

template <typename Handle, typename Less = std::owner_less<Handle>>
class PairTable final {
 public:
  // False when the key already has two members.
  bool Join(const std::string& key, const Handle& h) {
    Slot& slot = slots_[key];
    if (!slot.a.has_value()) {
      slot.a = h;
    } else if (!slot.b.has_value()) {
      slot.b = h;
    } else {
      return false;
    }
    keys_.emplace(h, key);
    return true;
  }

  void Leave(const Handle& h) {
    auto it = keys_.find(h);
    if (it == keys_.end()) return;
    auto slot = slots_.find(it->second);
    Equal eq;
    if (slot->second.a.has_value() && eq(*slot->second.a, h)) {
      slot->second.a = std::move(slot->second.b);
      slot->second.b.reset();
    } else if (slot->second.b.has_value() && eq(*slot->second.b, h)) {
      slot->second.b.reset();
    }
    if (!slot->second.a.has_value()) slots_.erase(slot);
    keys_.erase(it);
  }

  // The members `key` has now (zero, one or two).
  std::vector<Handle> Members(const std::string& key) const {
    std::vector<Handle> out;
    auto it = slots_.find(key);
    if (it == slots_.end()) return out;
    if (it->second.a.has_value()) out.push_back(*it->second.a);
    if (it->second.b.has_value()) out.push_back(*it->second.b);
    return out;
  }

  // The other member of `h`'s pair, if there is one.
  std::optional<Handle> Peer(const Handle& h) const {
    auto it = keys_.find(h);
    if (it == keys_.end()) return std::nullopt;
    const Slot& slot = slots_.at(it->second);
    Equal eq;
    if (slot.a.has_value() && eq(*slot.a, h)) return slot.b;
    return slot.a;
  }

  size_t size() const { return keys_.size(); }

 private:
  struct Equal {
    bool operator()(const Handle& x, const Handle& y) const {
      Less less;
      return !less(x, y) && !less(y, x);
    }
  };
  struct Slot {
    std::optional<Handle> a;
    std::optional<Handle> b;
  };
  std::map<std::string, Slot> slots_;
  std::map<Handle, std::string, Less> keys_;
};

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_PAIR_TABLE_H_
