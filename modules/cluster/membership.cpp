#include "cluster/membership.hpp"

#include <algorithm>

namespace mqnode::cluster {

MemberDiff diff_members(const std::vector<Member>& before, const std::vector<Member>& after) {
  auto has = [](const std::vector<Member>& in, uint64_t id) {
    return std::any_of(in.begin(), in.end(), [id](const Member& m) { return m.id == id; });
  };
  MemberDiff d;
  for (const auto& m : after)
    if (!has(before, m.id)) d.joined.push_back(m);
  for (const auto& m : before)
    if (!has(after, m.id)) d.left.push_back(m);
  return d;
}

std::optional<bool> QuorumWatch::update(bool leader_known, Clock::time_point now) {
  if (leader_known) {
    lost_since_.reset();
    if (majority_) return std::nullopt;
    majority_ = true;
    return true;
  }
  if (!lost_since_) lost_since_ = now;
  if (!majority_ || now - *lost_since_ < grace_) return std::nullopt;
  majority_ = false;
  return false;
}

}  // namespace mqnode::cluster
