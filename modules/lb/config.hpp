// The typed, validated `/lb` slice: frontends (listeners), backends (server pools with a
// balance algorithm, health check and timeouts) and the stats listener. Defaults live
// here and only here; docs/lb.md lists them. Sessions keep a shared_ptr<const LbConfig>.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/config.hpp"
#include "core/endpoint.hpp"
#include "core/tls.hpp"

namespace mqnode::lb {

using Millis = std::chrono::milliseconds;

enum class Algorithm { RoundRobin, StaticRr, LeastConn, Source };
// HAProxy's spelling ("roundrobin", "static-rr", "leastconn", "source").
const char* algorithm_name(Algorithm a);

enum class CheckType { None, Tcp, Amqp };
const char* check_type_name(CheckType t);

// What a frontend does with a connection beyond its maxconn.
enum class OverflowMode {
  Queue,   // stop accepting until a session ends; the kernel's backlog holds the rest (HAProxy)
  Refuse,  // accept and close at once, counted as denied
};

struct CheckConfig {
  CheckType type = CheckType::Tcp;
  Millis inter{2000};      // between checks while the server is steadily up
  Millis fastinter{2000};  // while a state change is pending ("UP 2/3", "DOWN 1/2"); default inter
  Millis downinter{2000};  // while steadily down; default inter
  Millis timeout{2000};    // one check's connect + response budget; default inter
  int rise = 2;            // consecutive successes to mark a down server up
  int fall = 3;            // consecutive failures to mark an up server down
  bool operator==(const CheckConfig&) const = default;
};

struct ServerConfig {
  std::string name;
  core::Endpoint address;
  int weight = 1;           // 0..256; 0 takes no new sessions
  bool backup = false;      // used only when no active server is usable
  uint32_t maxconn = 0;     // 0 = unlimited; when every server is full, sessions wait in the backend's queue
  bool disabled = false;    // starts in maintenance (HAProxy `disabled`)
  bool check = true;        // run the backend's check on this server
  bool local = false;       // the broker of this node: follows its health on the EventBus
  bool operator==(const ServerConfig&) const = default;
};

struct BackendConfig {
  std::string name;
  Algorithm balance = Algorithm::RoundRobin;
  int retries = 3;            // connect attempts after the first one fails
  bool redispatch = true;     // retries go to another server (HAProxy `option redispatch 1`)
  Millis timeout_connect{5000};
  // Longest wait in the backend's queue for a server slot (servers' maxconn); HAProxy's
  // `timeout queue`, which also defaults to the connect timeout.
  Millis timeout_queue{5000};
  Millis timeout_server{3600000};
  // When non-zero, replaces client and server timeouts once connected (HAProxy `timeout tunnel`).
  Millis timeout_tunnel{0};
  bool shutdown_sessions_on_down = false;  // HAProxy `on-marked-down shutdown-sessions`
  CheckConfig check;
  std::vector<ServerConfig> servers;
  bool operator==(const BackendConfig&) const = default;
};

struct FrontendConfig {
  std::string name;
  std::vector<core::Endpoint> binds;
  std::string backend;
  std::size_t backend_index = 0;  // resolved from `backend`
  uint32_t maxconn = 2000;
  OverflowMode overflow = OverflowMode::Queue;
  Millis timeout_client{3600000};
  bool operator==(const FrontendConfig&) const = default;
};

struct StatsConfig {
  bool enabled = false;  // a `stats` object with `bind` was given
  core::Endpoint bind;
  std::string uri = "/haproxy";
  std::string user, password;  // both empty: no authentication (HAProxy without `stats auth`)
  std::string realm = "HAProxy Statistics";
  int refresh_s = 0;           // 0: no auto-refresh
  bool admin = true;           // allow runtime control (needs user/password)
  // HTTPS (/lb/stats/tls, HAProxy's `bind ... ssl crt`): built, files read, at parse time.
  std::shared_ptr<core::tls::TlsContext> tls;
};

// How the byte pumps move data (Linux splice(2) through a pipe per direction, or a
// user-space buffer).
enum class SpliceMode {
  Auto,    // buffered until a read fills the buffer, then spliced until the direction idles
           // (HAProxy's `option splice-auto`: small AMQP frames are cheaper to copy)
  Always,  // every transfer spliced (`option splice-request` + `splice-response`)
  Never,   // user-space buffer only
};
const char* splice_mode_name(SpliceMode m);

struct LbConfig {
  std::vector<FrontendConfig> frontends;
  std::vector<BackendConfig> backends;
  StatsConfig stats;
  std::size_t buffer_size = 16384;  // per direction, only while data is moving
  SpliceMode splice = SpliceMode::Auto;
  bool log_sessions = true;
};

// Parses and validates <slice> (the "/lb" object); throws core::ConfigError naming the
// JSON pointer.
LbConfig parse_lb_config(core::ConfigNode slice);

}  // namespace mqnode::lb
