// A frontend: its listeners (kept, added or closed by a reload), the accept loops that turn
// connections into proxy sessions of its backend, and HAProxy's maxconn behaviour (queue in
// the kernel's backlog or refuse).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include "core/log.hpp"
#include "lb/backend.hpp"
#include "lb/config.hpp"
#include "lb/server.hpp"

namespace mqnode::lb {

class LbModule;

class Frontend : public std::enable_shared_from_this<Frontend> {
 public:
  Frontend(LbModule& lb, const FrontendConfig& cfg, std::shared_ptr<Backend> backend, int iid)
      : lb_(lb), cfg_(cfg), backend_(std::move(backend)), iid_(iid) {}

  const std::string& name() const { return cfg_.name; }
  const FrontendConfig& config() const { return cfg_; }
  Backend& backend() { return *backend_; }
  const Backend& backend() const { return *backend_; }
  const std::shared_ptr<Backend>& backend_ptr() const { return backend_; }
  int iid() const { return iid_; }
  LbModule& lb() { return lb_; }

  // Binds every address of the config (throws on failure) and starts accepting.
  void start(asio::io_context& io, const core::Logger& log);
  // What start() does before binding (a frontend added by a reload gets bound listeners).
  void init(asio::io_context& io, const core::Logger& log);
  void stop();
  // A session of this frontend ended: wakes an accept loop waiting for a slot.
  void release();
  std::vector<asio::ip::tcp::endpoint> local_endpoints() const;

  // --- reload ---
  using AcceptorPtr = std::shared_ptr<asio::ip::tcp::acceptor>;
  struct Listener {
    std::string bind;  // core::Endpoint::to_string() of the configured address
    AcceptorPtr acceptor;
  };
  // New config and backend for the sessions accepted from now on.
  void reconfigure(const FrontendConfig& cfg, std::shared_ptr<Backend> backend);
  // Takes the listeners to use from now on (kept ones and newly bound ones); the others
  // are closed (their established sessions are not touched).
  void set_listeners(std::vector<Listener> next);
  const std::vector<Listener>& listeners() const { return listeners_; }

  FrontendStats stats;

 private:
  void spawn_accept_loop(const AcceptorPtr& acc);
  asio::awaitable<void> accept_loop(AcceptorPtr acc);

  LbModule& lb_;
  FrontendConfig cfg_;
  std::shared_ptr<Backend> backend_;
  int iid_;
  const core::Logger* log_ = nullptr;
  std::vector<Listener> listeners_;
  std::unique_ptr<asio::steady_timer> slot_;  // accept loops wait on it while at maxconn
  bool stopping_ = false;
};

}  // namespace mqnode::lb
