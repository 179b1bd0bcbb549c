// The `vip` role as a core::Module: one Runner per configured instance wires the pure
// Instance state machine to a raw IP socket (protocol 112), a steady_timer, netlink VIPs and
// gratuitous ARP, and feeds it the health of tracked modules from the EventBus.
#pragma once

#include <memory>
#include <vector>

#include "core/module.hpp"
#include "vrrp/config.hpp"

namespace mqnode::vrrp {

class Netlink;
class Runner;
class ScriptRunner;

class VrrpModule final : public core::Module {
 public:
  explicit VrrpModule(core::ModuleContext ctx);
  ~VrrpModule() override;

  std::string_view name() const override { return "vrrp"; }
  void configure(core::ConfigNode slice) override;
  void start() override;
  asio::awaitable<void> stop() override;
  core::Health health() const override;
  void dump(nlohmann::json& out) const override;
  void metrics(core::MetricsWriter& out) const override;

 private:
  friend class Runner;
  friend class ScriptRunner;
  void publish_health();
  const ScriptRunner* script_runner(std::string_view name) const;
  void on_script(std::string_view name, bool up, std::string_view detail);

  core::ModuleContext ctx_;
  VrrpConfig cfg_;
  std::unique_ptr<Netlink> nl_;
  std::vector<std::unique_ptr<ScriptRunner>> scripts_;
  std::vector<std::unique_ptr<Runner>> runners_;
  int subscription_ = 0;
  bool started_ = false;
  bool stopping_ = false;
};

}  // namespace mqnode::vrrp
