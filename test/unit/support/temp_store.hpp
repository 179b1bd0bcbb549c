// For unit tests that need a real SQLite store: a temporary directory, a quiet logger and
// a way to run the loop until a completion posted by the store's threads has arrived.
#pragma once

#include <stdlib.h>

#include <chrono>
#include <filesystem>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <doctest/doctest.h>

#include "core/log.hpp"

namespace mqnode::test {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/mqnode-unit-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

inline core::Logger quiet_log() {
  auto sink = std::make_shared<core::LogSink>();
  sink->level = core::LogLevel::Error;
  return core::Logger(sink, "test");
}

// Runs <io> until <done>() holds (bounded: 10 s), for completions from the store threads.
template <class Pred>
void run_until(asio::io_context& io, Pred done) {
  io.restart();  // a previous call's work guard stopped it when it went
  auto work = asio::make_work_guard(io);
  for (int i = 0; i < 2000 && !done(); ++i) io.run_for(std::chrono::milliseconds(5));
  REQUIRE(done());
}

}  // namespace mqnode::test
