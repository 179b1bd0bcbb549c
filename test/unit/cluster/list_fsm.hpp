// A state machine for the cluster tests: an append-only list of strings. Its reply is
// "applied:<entry>", its snapshot the list length-prefixed; a snapshot that does not parse
// is refused, as a real one would be.
#pragma once

#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cluster/state_machine.hpp"

namespace mqnode::test {

class ListFsm : public cluster::StateMachine {
 public:
  std::vector<uint8_t> apply(uint64_t index, std::span<const uint8_t> command) override {
    std::lock_guard lock(mu_);
    if (index <= last_index_) throw std::logic_error("indexes must increase");
    last_index_ = index;
    entries_.emplace_back(command.begin(), command.end());
    const std::string reply = "applied:" + entries_.back();
    return {reply.begin(), reply.end()};
  }
  std::vector<uint8_t> snapshot() override {
    std::lock_guard lock(mu_);
    std::vector<uint8_t> out;
    for (const auto& e : entries_) {
      const auto n = static_cast<uint32_t>(e.size());
      out.insert(out.end(), {uint8_t(n >> 24), uint8_t(n >> 16), uint8_t(n >> 8), uint8_t(n)});
      out.insert(out.end(), e.begin(), e.end());
    }
    return out;
  }
  void restore(std::span<const uint8_t> snap) override {
    std::vector<std::string> entries;
    std::size_t pos = 0;
    while (pos < snap.size()) {
      if (snap.size() - pos < 4) throw std::runtime_error("truncated snapshot");
      const std::size_t n = std::size_t{snap[pos]} << 24 | std::size_t{snap[pos + 1]} << 16 |
                            std::size_t{snap[pos + 2]} << 8 | snap[pos + 3];
      pos += 4;
      if (snap.size() - pos < n) throw std::runtime_error("truncated snapshot");
      entries.emplace_back(snap.begin() + static_cast<std::ptrdiff_t>(pos),
                           snap.begin() + static_cast<std::ptrdiff_t>(pos + n));
      pos += n;
    }
    std::lock_guard lock(mu_);
    entries_ = std::move(entries);
    last_index_ = 0;  // a snapshot's entries carry no index; the next apply's is higher anyway
    ++restores_;
  }

  // Any thread (the tests read while the raft thread applies).
  std::vector<std::string> entries() const {
    std::lock_guard lock(mu_);
    return entries_;
  }
  int restores() const {
    std::lock_guard lock(mu_);
    return restores_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::string> entries_;
  uint64_t last_index_ = 0;
  int restores_ = 0;
};

inline std::vector<uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

}  // namespace mqnode::test
