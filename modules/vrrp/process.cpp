#include "vrrp/process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <fmt/format.h>

extern char** environ;

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace mqnode::vrrp {

using namespace std::chrono;

std::string ProcessResult::describe() const {
  if (!spawned) return "cannot run: " + spawn_error;
  if (timed_out) return fmt::format("timed out after {} ms (killed)", duration.count());
  if (exited) return fmt::format("exit {}", exit_code);
  return fmt::format("killed by signal {}", signal);
}

std::string ProcessResult::output_line() const {
  std::string s = output;
  for (auto& c : s)
    if (c == '\n' || c == '\r' || c == '"') c = c == '"' ? '\'' : ' ';
  if (s.size() > 300) s = s.substr(0, 300) + "...";
  return s;
}

struct Process::Impl {
  explicit Impl(asio::io_context& io) : io(io), pidfd(io), out(io), timer(io) {}
  asio::io_context& io;
  pid_t pid = -1;
  asio::posix::stream_descriptor pidfd;
  asio::posix::stream_descriptor out;
  asio::steady_timer timer;
  steady_clock::time_point started{};
  bool reaped = false;
};

Process::Process(asio::io_context& io) : impl_(std::make_unique<Impl>(io)) {}

Process::~Process() {
  // Not reaped (the loop stopped first): make sure it does not outlive us unkilled.
  if (impl_->pid > 0 && !impl_->reaped) ::kill(-impl_->pid, SIGKILL);
}

std::shared_ptr<Process> Process::start(asio::io_context& io, const std::vector<std::string>& argv,
                                        milliseconds timeout, Done done) {
  std::shared_ptr<Process> p(new Process(io));
  p->done_ = std::move(done);
  p->spawn(argv, timeout);
  return p;
}

void Process::spawn(const std::vector<std::string>& argv, milliseconds timeout) {
  auto& m = *impl_;
  m.started = steady_clock::now();
  auto fail = [&](std::string why) {
    result_.spawned = false;
    result_.spawn_error = std::move(why);
    asio::post(m.io, [self = shared_from_this()] { self->finish(); });
  };
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) < 0) return fail(fmt::format("pipe: {}", std::strerror(errno)));

  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
  // Own process group (killed as a whole on timeout), no blocked signals, default handlers.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, args[0], &fa, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    return fail(fmt::format("{}: {}", argv[0], std::strerror(rc)));
  }
  m.pid = pid;
  result_.spawned = true;
  ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  m.out.assign(fds[0]);

  // The pid is ours and not reaped yet, so the pidfd cannot name another process.
  int pfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pfd < 0) {
    // Kernel < 5.3: no way to wait without blocking or a SIGCHLD handler; refuse to run.
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);  // just killed: returns at once
    m.reaped = true;
    result_.spawned = false;
    result_.spawn_error = fmt::format("pidfd_open: {} (needs Linux >= 5.3)", std::strerror(errno));
    asio::post(m.io, [self = shared_from_this()] { self->finish(); });
    return;
  }
  m.pidfd.assign(pfd);
  m.timer.expires_after(timeout);
  m.timer.async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (ec || self->impl_->reaped) return;
    self->result_.timed_out = true;
    ::kill(-self->impl_->pid, SIGKILL);
  });
  read_output();
  wait_exit();
}

void Process::read_output() {
  auto buf = std::make_shared<std::array<char, 1024>>();
  impl_->out.async_read_some(asio::buffer(*buf), [self = shared_from_this(), buf](const asio::error_code& ec, std::size_t n) {
    if (ec) return;  // EOF, or closed by finish()
    auto& o = self->result_.output;
    o.append(buf->data(), std::min(n, kMaxOutput - std::min(kMaxOutput, o.size())));
    self->read_output();
  });
}

void Process::wait_exit() {
  impl_->pidfd.async_wait(asio::posix::stream_descriptor::wait_read, [self = shared_from_this()](const asio::error_code& ec) {
    if (ec) return;
    auto& m = *self->impl_;
    siginfo_t si{};
    if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(m.pidfd.native_handle()), &si, WEXITED | WNOHANG) < 0 ||
        si.si_pid == 0) {
      if (errno == ECHILD) {  // someone else reaped it (SIGCHLD ignored?): report what we know
        m.reaped = true;
        self->result_.signal = SIGKILL;
        self->finish();
        return;
      }
      self->wait_exit();
      return;
    }
    m.reaped = true;
    if (si.si_code == CLD_EXITED) {
      self->result_.exited = true;
      self->result_.exit_code = si.si_status;
    } else {
      self->result_.signal = si.si_status;
    }
    // What the child wrote before exiting is in the pipe now; a grandchild that kept the
    // pipe open is not waited for.
    char buf[1024];
    for (;;) {
      ssize_t n = ::read(m.out.native_handle(), buf, sizeof buf);
      if (n <= 0) break;
      auto& o = self->result_.output;
      o.append(buf, std::min(static_cast<std::size_t>(n), kMaxOutput - std::min(kMaxOutput, o.size())));
    }
    self->finish();
  });
}

void Process::finish() {
  if (finished_) return;
  finished_ = true;
  auto& m = *impl_;
  result_.duration = duration_cast<milliseconds>(steady_clock::now() - m.started);
  asio::error_code ec;
  m.timer.cancel();
  m.out.close(ec);
  m.pidfd.close(ec);
  while (!result_.output.empty() && (result_.output.back() == '\n' || result_.output.back() == '\r'))
    result_.output.pop_back();
  if (auto d = std::move(done_)) d(result_);
}

void Process::cancel() {
  done_ = nullptr;
  if (impl_->pid > 0 && !impl_->reaped) ::kill(-impl_->pid, SIGKILL);
}

}  // namespace mqnode::vrrp
