#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "store/data_dir_lock.hpp"
#include "support/temp_store.hpp"

using namespace mqnode;
using test::TempDir;

namespace {
std::string file_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

// flock(2) locks belong to an open file description, so a second lock in this process
// conflicts exactly as one in another process does.
TEST_CASE("a data dir is locked by one holder at a time, which names itself") {
  TempDir dir;
  std::optional<store::DataDirLock> first(std::in_place, dir.path.string());
  CHECK(file_text(first->path()) == std::to_string(::getpid()) + "\n");

  SUBCASE("a second lock is refused with the holder's pid and the dir") {
    try {
      store::DataDirLock second(dir.path.string());
      FAIL("the second lock was granted");
    } catch (const store::DataDirBusy& e) {
      CHECK(e.holder == ::getpid());
      std::string what = e.what();
      CHECK(what.find(dir.path.string()) != std::string::npos);
      CHECK(what.find(fmt::format("pid {}", ::getpid())) != std::string::npos);
    }
  }
  SUBCASE("released by its holder, the dir can be locked again, over the stale file") {
    first.reset();
    store::DataDirLock again(dir.path.string());
    CHECK(file_text(again.path()) == std::to_string(::getpid()) + "\n");
  }
  SUBCASE("a holder that wrote no pid is reported as such") {
    std::ofstream(first->path(), std::ios::trunc).flush();
    try {
      store::DataDirLock second(dir.path.string());
      FAIL("the second lock was granted");
    } catch (const store::DataDirBusy& e) {
      CHECK(e.holder == 0);
      CHECK(std::string(e.what()).find("wrote no pid") != std::string::npos);
    }
  }
}

TEST_CASE("a data dir that does not exist is an error naming the lock file, not a busy dir") {
  TempDir dir;
  auto missing = (dir.path / "no" / "such").string();
  try {
    store::DataDirLock lock(missing);
    FAIL("locked a directory that does not exist");
  } catch (const store::DataDirBusy&) {
    FAIL("reported as busy");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find(missing + "/mqnode.lock") != std::string::npos);
  }
}
