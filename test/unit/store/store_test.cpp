#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <asio/io_context.hpp>

#include "store/store.hpp"
#include "support/temp_store.hpp"

using namespace mqnode;
using test::quiet_log;
using test::run_until;
using test::TempDir;

namespace {
store::MessageContent content(const std::shared_ptr<std::vector<uint8_t>>& body) {
  static const std::vector<uint8_t> props = {0x10, 0x00, 0x02};  // delivery_mode = 2
  return {body, "ex", "rk", props, *body};
}
}  // namespace

TEST_CASE("the store keeps definitions and messages across reopen, in order") {
  TempDir dir;
  auto file = (dir.path / "mqnode.db").string();
  asio::io_context io;
  uint64_t first = 0, second = 0;
  {
    store::Store s(io, file, quiet_log());
    auto snap = s.load();
    CHECK(snap.queues.empty());
    s.put_exchange({"/", "x", "topic", false, true, {1, 2}});
    s.put_queue({"/", "q", false, {}});
    s.put_queue({"/", "gone", true, {}});
    s.put_binding({"/", "x", false, "q", "a.#", {}});
    auto body = std::make_shared<std::vector<uint8_t>>(std::vector<uint8_t>{'h', 'i'});
    first = s.put_message("/", "q", content(body));
    second = s.put_message("/", "q", content(std::make_shared<std::vector<uint8_t>>()));
    uint64_t third = s.put_message("/", "q", content(body));
    CHECK(first < second);
    CHECK(second < third);
    s.delete_message(third);
    uint64_t paged = s.put_message("/", "q", content(body), /*transient=*/true);
    CHECK_FALSE(s.durable(paged));
    s.put_message("/", "gone", content(body));
    s.delete_queue("/", "gone");  // takes its messages with it
    bool ok = false, done = false;
    s.after_commit([&](bool result) {
      ok = result;
      done = true;
    });
    run_until(io, [&] { return done; });
    CHECK(ok);
    CHECK(s.stats().commits >= 1);
    CHECK(s.durable(first));
    CHECK(s.durable(paged));
    CHECK(s.stats().pending_bytes == 0);
    // Paged-out bodies come back through the reader thread, in the order asked, without
    // the ones deleted meanwhile; and one at a time on the caller's thread.
    std::vector<store::MessageRecord> loaded;
    done = false;
    s.load_messages({paged, third, first}, [&](std::vector<store::MessageRecord> recs) {
      loaded = std::move(recs);
      done = true;
    });
    run_until(io, [&] { return done; });
    REQUIRE(loaded.size() == 2);
    CHECK(loaded[0].id == paged);
    CHECK(loaded[0].body == std::vector<uint8_t>{'h', 'i'});
    CHECK(loaded[1].id == first);
    CHECK(loaded[1].routing_key == "rk");
    auto one = s.read_message(first);
    REQUIRE(one);
    CHECK(one->body == std::vector<uint8_t>{'h', 'i'});
    CHECK_FALSE(s.read_message(third));
  }
  store::Store s(io, file, quiet_log());
  auto snap = s.load();
  REQUIRE(snap.exchanges.size() == 1);
  CHECK(snap.exchanges[0].type == "topic");
  CHECK(snap.exchanges[0].internal);
  CHECK(snap.exchanges[0].arguments == std::vector<uint8_t>{1, 2});
  REQUIRE(snap.queues.size() == 1);
  CHECK(snap.queues[0].name == "q");
  REQUIRE(snap.bindings.size() == 1);
  CHECK(snap.bindings[0].key == "a.#");
  // Persistent messages only (the paged-out transient one died with the run), without
  // their bodies: queues load those when they are due.
  REQUIRE(snap.messages.size() == 2);
  CHECK(snap.messages[0].id == first);
  CHECK(snap.messages[0].body_size == 2);
  CHECK(snap.messages[0].body.empty());
  CHECK(snap.messages[1].id == second);
  CHECK(snap.messages[1].body_size == 0);
  CHECK(s.read_message(first)->body == std::vector<uint8_t>{'h', 'i'});
  // New ids continue after the highest one on disk.
  CHECK(s.put_message("/", "q", content(std::make_shared<std::vector<uint8_t>>())) > second);
}

TEST_CASE("runtime policies are stored, replaced by name and deleted") {
  TempDir dir;
  auto file = (dir.path / "mqnode.db").string();
  asio::io_context io;
  {
    store::Store s(io, file, quiet_log());
    s.put_policy({"/", "ttl", "^a", "queues", R"({"message-ttl":1})", 1});
    s.put_policy({"/", "ttl", "^b", "all", R"({"message-ttl":2})", 7});  // same name: replaces
    s.put_policy({"other", "ttl", "^c", "exchanges", R"({"alternate-exchange":"ae"})", 0});
    s.put_policy({"/", "gone", ".*", "all", R"({"max-length":1})", 0});
    s.delete_policy("/", "gone");
    bool done = false;
    s.after_commit([&](bool) { done = true; });
    run_until(io, [&] { return done; });
  }
  store::Store s(io, file, quiet_log());
  auto snap = s.load();
  REQUIRE(snap.policies.size() == 2);
  auto it = std::find_if(snap.policies.begin(), snap.policies.end(), [](auto& p) { return p.vhost == "/"; });
  REQUIRE(it != snap.policies.end());
  CHECK(it->name == "ttl");
  CHECK(it->pattern == "^b");
  CHECK(it->apply_to == "all");
  CHECK(it->definition == R"({"message-ttl":2})");
  CHECK(it->priority == 7);
}

TEST_CASE("an unusable store file is refused with a message that says what to do") {
  TempDir dir;
  asio::io_context io;
  auto junk = dir.path / "mqnode.db";
  std::ofstream(junk) << std::string(4096, 'x');
  try {
    store::Store s(io, junk.string(), quiet_log());
    FAIL("a corrupt file was accepted");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("move it away") != std::string::npos);
  }
  try {
    store::Store s(io, (dir.path / "no" / "such" / "dir.db").string(), quiet_log());
    FAIL("an impossible path was accepted");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("cannot open the store") != std::string::npos);
  }
}
