// A child process run without blocking the loop: posix_spawnp into its own process group,
// stdout+stderr into a pipe (the first 4 KiB kept), exit noticed through a pidfd watched by
// the io_context (no SIGCHLD handler, no waitpid(-1), no thread), killed (the whole group)
// after a timeout. Loop thread only.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <asio/io_context.hpp>

namespace mqnode::vrrp {

struct ProcessResult {
  bool spawned = false;
  std::string spawn_error;  // when !spawned
  bool exited = false;      // normal exit (exit_code valid)
  int exit_code = -1;
  int signal = 0;           // killed by this signal
  bool timed_out = false;   // we killed it
  std::chrono::milliseconds duration{0};
  std::string output;       // stdout and stderr, first kMaxOutput bytes
  bool success() const { return spawned && exited && exit_code == 0 && !timed_out; }
  std::string describe() const;  // "exit 0", "killed by signal 9", "timed out after 1000 ms", ...
  // <output> fit for a key="value" log field: one line, no double quotes, at most 300 chars.
  std::string output_line() const;
};

class Process : public std::enable_shared_from_this<Process> {
 public:
  static constexpr std::size_t kMaxOutput = 4096;
  using Done = std::function<void(const ProcessResult&)>;

  // Starts argv (PATH searched for argv[0]). <done> runs on the loop once the process has
  // exited (or could not start: then it is posted, never called from inside start()).
  static std::shared_ptr<Process> start(asio::io_context& io, const std::vector<std::string>& argv,
                                        std::chrono::milliseconds timeout, Done done);
  ~Process();

  // Kills the process group; <done> is not called any more. The child is still reaped.
  void cancel();
  bool finished() const { return finished_; }

  struct Impl;

 private:
  explicit Process(asio::io_context& io);
  void spawn(const std::vector<std::string>& argv, std::chrono::milliseconds timeout);
  void wait_exit();
  void read_output();
  void finish();

  std::unique_ptr<Impl> impl_;
  Done done_;
  ProcessResult result_;
  bool finished_ = false;
};

}  // namespace mqnode::vrrp
