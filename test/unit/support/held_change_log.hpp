// A ChangeLog that holds proposals until the test delivers them, as a cluster's log
// delivers them later: what waits for a proposal can be observed while it waits.
#pragma once

#include <doctest/doctest.h>

#include <utility>
#include <vector>

#include "broker/catalog.hpp"

namespace mqnode::test {

struct HeldChangeLog : broker::ChangeLog {
  std::vector<std::pair<broker::Change, broker::ProposeDone>> held;
  void submit(const broker::Change& c, broker::ProposeDone done) override { held.emplace_back(c, std::move(done)); }
  // Applies the oldest held proposal on <catalog> and tells its proposer.
  void deliver_next(broker::Catalog& catalog) {
    REQUIRE(!held.empty());
    auto [change, done] = std::move(held.front());
    held.erase(held.begin());
    done(catalog.apply(change));
  }
};

}  // namespace mqnode::test
