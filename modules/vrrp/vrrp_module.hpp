// The `vip` role as a core::Module: one InstanceRunner per configured instance wires the
// pure Instance state machine to its RawLink (raw IP socket of protocol 112, netlink VIPs,
// gratuitous ARP) and the steady clock, and feeds it the health of tracked modules from the
// EventBus and the status of track scripts from their ScriptRunners.
#pragma once

#include <memory>
#include <vector>

#include "core/module.hpp"
#include "vrrp/clock.hpp"
#include "vrrp/config.hpp"

namespace mqnode::vrrp {

class InstanceRunner;
class Netlink;
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
  void publish_health();
  const ScriptRunner* script_runner(std::string_view name) const;

  core::ModuleContext ctx_;
  VrrpConfig cfg_;
  SteadyClock clock_;
  std::unique_ptr<Netlink> nl_;
  std::vector<std::unique_ptr<ScriptRunner>> scripts_;
  std::vector<std::unique_ptr<InstanceRunner>> runners_;
  int subscription_ = 0;
  int membership_sub_ = 0;
  bool started_ = false;
  bool stopping_ = false;
};

}  // namespace mqnode::vrrp
