// Definitions export and import in RabbitMQ 3.10's file shape (rabbit_version, users,
// vhosts, permissions, topic_permissions, parameters, global_parameters, policies, queues,
// exchanges, bindings), whole-node or for one vhost. An import is planned first: the whole
// file is checked against itself and the catalog (shapes, unknown keys, references,
// patterns, arguments, equivalence with what exists), and only a clean plan becomes catalog
// changes, so a file refused here changes nothing.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "broker/catalog.hpp"
#include "broker/change.hpp"

namespace mqnode::mgmt {

// Global parameters (rabbitmqctl set_global_parameter) are catalog parameters of this
// component with no vhost.
inline constexpr const char* kGlobalComponent = "global";

// The definitions of <cat>: every vhost's when <vhost> is nullopt (with users, vhosts,
// permissions and global parameters), else that vhost's alone and without "vhost" keys.
// Exclusive queues and their bindings are left out, as RabbitMQ does; so are the default
// and amq.* exchanges.
nlohmann::json export_definitions(const broker::Catalog& cat, const std::optional<std::string>& vhost,
                                  const std::string& product_version);

struct ImportPlan {
  std::vector<broker::Change> changes;  // in an order apply() accepts
  std::vector<std::string> where;       // the file's JSON path of each ("/queues/2")
};

// Throws ApiError 400 naming the JSON path of the first problem. <vhost>: a per-vhost
// import (items carry no vhost; users, vhosts and permissions are ignored, as RabbitMQ).
ImportPlan plan_import(const nlohmann::json& doc, const broker::Catalog& cat, const std::optional<std::string>& vhost);

}  // namespace mqnode::mgmt
