#include "ctl_definitions.hpp"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <system_error>

#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "broker/auth.hpp"
#include "core/http.hpp"
#include "ctl.hpp"

namespace mqnode::app {

namespace {

using nlohmann::json;

// Ends the verb: <message> to stderr and rabbitmqctl's exit code <code>.
struct Failure {
  int code;
  std::string message;
};
constexpr int kExitNoUser = 67;      // EX_NOUSER: rabbitmqctl's answer for an unknown user
constexpr int kExitCantCreate = 73;  // EX_CANTCREAT: the export file cannot be written

// The management API over the control socket, one "Connection: close" request a call.
class Api {
 public:
  explicit Api(std::string socket) : socket_(std::move(socket)) {}

  struct Reply {
    int status = 0;
    json body;  // null when the body is not JSON
    std::string text;
  };

  Reply call(const std::string& method, const std::string& target, const json& body = nullptr,
             const std::vector<std::pair<std::string, std::string>>& headers = {}) const {
    asio::io_context io;
    asio::local::stream_protocol::socket sock(io);
    asio::error_code ec;
    try {
      sock.connect(asio::local::stream_protocol::endpoint(socket_), ec);
    } catch (const std::system_error& e) {
      ec = e.code();
    }
    if (ec)
      throw Failure{kExitUnavailable, fmt::format("Error: unable to reach the node through its control socket {}: {}\n"
                                                  "Is mqnode running with this data dir?",
                                                  socket_, ec.message())};
    const std::string payload = body.is_null() ? std::string() : body.dump();
    std::string wire = fmt::format("{} {} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n", method, target);
    for (auto [name, value] : headers) {
      std::replace_if(value.begin(), value.end(), [](char ch) { return ch == '\r' || ch == '\n'; }, ' ');
      wire += fmt::format("{}: {}\r\n", name, value);
    }
    if (!payload.empty()) wire += fmt::format("Content-Type: application/json\r\nContent-Length: {}\r\n", payload.size());
    wire += "\r\n";
    wire += payload;
    asio::write(sock, asio::buffer(wire), ec);
    std::string in;
    if (!ec) asio::read(sock, asio::dynamic_buffer(in), ec);
    auto resp = core::http::parse_response(in);
    if (!resp) throw Failure{kExitSoftware, fmt::format("Error: no valid reply from the node on {}", socket_)};
    Reply r{resp->status, json::parse(resp->body, nullptr, false), resp->body};
    if (r.body.is_discarded()) r.body = nullptr;
    return r;
  }

 private:
  std::string socket_;
};

std::string enc(const std::string& s) { return core::http::url_encode(s); }

// The node's reason for a refusal ({"error", "reason"}).
std::string reason_of(const Api::Reply& r) {
  if (r.body.is_object() && r.body.contains("reason")) {
    const auto& reason = r.body["reason"];
    return reason.is_string() ? reason.get<std::string>() : reason.dump();
  }
  return r.text;
}

[[noreturn]] void refused(const Api::Reply& r) {
  int code = r.status == 503 ? kExitUnavailable : (r.status == 400 || r.status == 404) ? kExitDataErr : kExitSoftware;
  throw Failure{code, "Error:\n" + reason_of(r)};
}

void expect(const Api::Reply& r, std::initializer_list<int> ok) {
  if (std::find(ok.begin(), ok.end(), r.status) == ok.end()) refused(r);
}

// rabbitmqctl's rendering of a value in a table cell.
std::string cell(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "";
    case json::value_t::string: return v.get<std::string>();
    case json::value_t::boolean: return v.get<bool>() ? "true" : "false";
    case json::value_t::array: {
      std::vector<std::string> parts;
      for (const auto& e : v) parts.push_back(cell(e));
      return fmt::format("[{}]", fmt::join(parts, ", "));
    }
    case json::value_t::object: {
      std::vector<std::string> parts;
      for (const auto& [k, e] : v.items()) parts.push_back(fmt::format("{{\"{}\",{}}}", k, e.is_string() ? "\"" + cell(e) + "\"" : cell(e)));
      return fmt::format("[{}]", fmt::join(parts, ","));
    }
    default: return v.dump();
  }
}

// A list verb's columns: those given, else <defaults>; each must be one of <known>
// (rabbitmqctl's usage error otherwise).
std::vector<std::string> columns(const std::vector<std::string>& given, std::vector<std::string> defaults,
                                 const std::set<std::string>& known) {
  if (given.empty()) return defaults;
  std::vector<std::string> bad;
  for (const auto& c : given)
    if (!known.count(c)) bad.push_back(c);
  if (!bad.empty())
    throw Failure{kExitUsage, fmt::format("Error (argument validation): Info key(s) {} are not supported\n"
                                          "Valid keys: {}",
                                          fmt::join(bad, ","), fmt::join(known, ", "))};
  return given;
}

// Prints <items> as rabbitmqctl's tab-separated table; <value> maps a column to an item's
// JSON value (by default the key of that name).
void print_table(const json& items, const std::vector<std::string>& cols, bool headers,
                 const std::map<std::string, std::string>& rename = {}) {
  if (headers) std::cout << fmt::format("{}\n", fmt::join(cols, "\t"));
  if (!items.is_array()) return;
  for (const auto& item : items) {
    std::vector<std::string> row;
    for (const auto& c : cols) {
      auto it = rename.find(c);
      const std::string key = it == rename.end() ? c : it->second;
      row.push_back(item.contains(key) ? cell(item[key]) : "");
    }
    std::cout << fmt::format("{}\n", fmt::join(row, "\t"));
  }
}

bool exists(const Api& api, const std::string& target) {
  auto r = api.call("GET", target);
  if (r.status == 404) return false;
  if (r.status != 200) refused(r);
  return true;
}

std::string read_file(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Failure{kExitUsage, fmt::format("Error (argument validation): Bad argument: File {} does not exist", path)};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

CLI::App* CtlDefinitions::add(CLI::App& ctl, const char* name, const char* help) {
  CLI::App* v = ctl.add_subcommand(name, help);
  v->fallthrough();  // as rabbitmqctl, -q and --data-dir may come after the verb too
  verbs_.push_back(v);
  return v;
}

CtlDefinitions::CtlDefinitions(CLI::App& ctl) {
  auto vhost_opt = [this](CLI::App* v) { v->add_option("-p,--vhost", vhost_, "virtual host")->capture_default_str(); };
  auto user = [this](CLI::App* v) { v->add_option("username", user_, "user name")->required(); };
  auto list_opts = [this](CLI::App* v, const char* what) {
    v->add_flag("--no-table-headers", no_headers_, "no header line");
    v->add_option("columns", args_, what);
  };
  CLI::App* v;
  v = add(ctl, "add_user", "create a user: USERNAME PASSWORD");
  user(v);
  v->add_option("password", password_, "password")->required();
  user(add(ctl, "delete_user", "delete a user: USERNAME"));
  v = add(ctl, "change_password", "change a user's password: USERNAME NEWPASSWORD");
  user(v);
  v->add_option("password", password_, "new password")->required();
  v = add(ctl, "set_user_tags", "set a user's tags: USERNAME [TAG ...]");
  user(v);
  v->add_option("tags", args_, "tags (administrator, monitoring, policymaker, management, ...)");
  list_opts(add(ctl, "list_users", "list users and their tags"), "columns (user, tags)");
  v = add(ctl, "add_vhost", "create a virtual host: VHOST");
  v->add_option("vhost", name_, "virtual host")->required();
  v->add_option("--description", description_, "description");
  v = add(ctl, "delete_vhost", "delete a virtual host and everything in it: VHOST");
  v->add_option("vhost", name_, "virtual host")->required();
  list_opts(add(ctl, "list_vhosts", "list virtual hosts"), "columns (name, description, tags, tracing, ...)");
  v = add(ctl, "set_permissions", "set a user's permissions in a vhost: USERNAME CONF WRITE READ");
  vhost_opt(v);
  user(v);
  v->add_option("conf", configure_, "configure pattern")->required();
  v->add_option("write", write_, "write pattern")->required();
  v->add_option("read", read_, "read pattern")->required();
  v = add(ctl, "clear_permissions", "revoke a user's permissions in a vhost: USERNAME");
  vhost_opt(v);
  user(v);
  v = add(ctl, "set_user_limits", "set a user's limits: USERNAME '{\"max-connections\": N, \"max-channels\": N}'");
  user(v);
  v->add_option("definition", description_, "limits as a JSON object (negative: no limit)")->required();
  v = add(ctl, "clear_user_limits", "clear a user's limit: USERNAME max-connections|max-channels|all");
  user(v);
  v->add_option("limittype", name_, "the limit to clear, or all")->required();
  v = add(ctl, "list_permissions", "list the permissions in a vhost");
  vhost_opt(v);
  v->add_flag("--no-table-headers", no_headers_, "no header line");
  v = add(ctl, "list_user_permissions", "list a user's permissions: USERNAME");
  user(v);
  v->add_flag("--no-table-headers", no_headers_, "no header line");
  for (auto [name, help] : {std::pair{"list_queues", "list queues [COLUMN ...]"},
                            std::pair{"list_exchanges", "list exchanges [COLUMN ...]"},
                            std::pair{"list_bindings", "list bindings [COLUMN ...]"}}) {
    v = add(ctl, name, help);
    vhost_opt(v);
    list_opts(v, "columns");
  }
  list_opts(add(ctl, "list_connections", "list AMQP connections [COLUMN ...]"), "columns");
  list_opts(add(ctl, "list_channels", "list AMQP channels [COLUMN ...]"), "columns");
  v = add(ctl, "list_consumers", "list consumers [COLUMN ...]");
  vhost_opt(v);
  list_opts(v, "columns");
  v = add(ctl, "purge_queue", "remove every ready message of a queue: QUEUE");
  vhost_opt(v);
  v->add_option("queue", name_, "queue name")->required();
  v = add(ctl, "delete_queue", "delete a queue: QUEUE");
  vhost_opt(v);
  v->add_option("queue", name_, "queue name")->required();
  v->add_flag("-e,--if-empty", if_empty_, "only if it has no ready messages");
  v->add_flag("-u,--if-unused", if_unused_, "only if it has no consumers");
  v = add(ctl, "close_connection", "close a connection (320) with a reason: NAME EXPLANATION");
  v->add_option("name", name_, "connection name, as list_connections name shows it")->required();
  v->add_option("explanation", description_, "the reason the client is given")->required();
  v = add(ctl, "export_definitions", "export definitions to a JSON file (\"-\": standard output)");
  v->add_option("path", path_, "file path or -")->required();
  v = add(ctl, "import_definitions", "import definitions from a JSON file (\"-\": standard input)");
  v->add_option("path", path_, "file path or -")->required();
  v = add(ctl, "hash_password", "print the hash of PASSWORD as users' password_hash takes it");
  v->add_option("password", password_, "password")->required();
}

bool CtlDefinitions::selected() const {
  return std::any_of(verbs_.begin(), verbs_.end(), [](const CLI::App* v) { return v->parsed(); });
}

int CtlDefinitions::run(const std::string& socket, bool quiet) const {
  auto verb = std::find_if(verbs_.begin(), verbs_.end(), [](const CLI::App* v) { return v->parsed(); });
  if (verb == verbs_.end()) return kExitUsage;
  const std::string cmd = (*verb)->get_name();
  const Api api(socket);
  const bool headers = !no_headers_;
  auto say = [quiet](const std::string& line) {
    if (!quiet) std::cout << line << "\n";
  };
  const std::string user_path = "/api/users/" + enc(user_);
  auto no_user = [this] { return Failure{kExitNoUser, fmt::format("Error:\nUser \"{}\" does not exist", user_)}; };
  try {
    if (cmd == "hash_password") {
      std::cout << broker::hash_password(password_) << "\n";
    } else if (cmd == "add_user") {
      say(fmt::format("Adding user \"{}\" ...", user_));
      if (exists(api, user_path)) throw Failure{kExitSoftware, fmt::format("Error:\nUser \"{}\" already exists", user_)};
      expect(api.call("PUT", user_path, {{"password", password_}, {"tags", ""}}), {201, 204});
      say("Done. Don't forget to grant the user permissions to some virtual hosts! See 'rabbitmqctl help "
          "set_permissions' to learn more.");
    } else if (cmd == "delete_user") {
      say(fmt::format("Deleting user \"{}\" ...", user_));
      auto r = api.call("DELETE", user_path);
      if (r.status == 404) throw no_user();
      expect(r, {204});
    } else if (cmd == "change_password") {
      say(fmt::format("Changing password for user \"{}\" ...", user_));
      if (!exists(api, user_path)) throw no_user();
      expect(api.call("PUT", user_path, {{"password", password_}}), {204});
    } else if (cmd == "set_user_tags") {
      say(fmt::format("Setting tags for user \"{}\" to [{}] ...", user_, fmt::join(args_, ", ")));
      if (!exists(api, user_path)) throw no_user();
      expect(api.call("PUT", user_path, {{"tags", args_}}), {204});
    } else if (cmd == "list_users") {
      say("Listing users ...");
      auto r = api.call("GET", "/api/users");
      expect(r, {200});
      print_table(r.body, columns(args_, {"user", "tags"}, {"user", "tags"}), headers, {{"user", "name"}});
    } else if (cmd == "add_vhost") {
      say(fmt::format("Adding vhost \"{}\" ...", name_));
      expect(api.call("PUT", "/api/vhosts/" + enc(name_), {{"description", description_}}), {201, 204});
    } else if (cmd == "delete_vhost") {
      say(fmt::format("Deleting vhost \"{}\" ...", name_));
      auto r = api.call("DELETE", "/api/vhosts/" + enc(name_));
      if (r.status == 404) throw Failure{kExitDataErr, fmt::format("Virtual host '{}' does not exist", name_)};
      expect(r, {204});
    } else if (cmd == "list_vhosts") {
      say("Listing vhosts ...");
      auto r = api.call("GET", "/api/vhosts");
      expect(r, {200});
      print_table(r.body,
                  columns(args_, {"name"}, {"name", "description", "tags", "tracing", "cluster_state", "default_queue_type",
                                           "metadata"}),
                  headers);
    } else if (cmd == "set_permissions" || cmd == "clear_permissions") {
      const bool set = cmd == "set_permissions";
      say(fmt::format("{} permissions for user \"{}\" in vhost \"{}\" ...", set ? "Setting" : "Clearing", user_, vhost_));
      if (!exists(api, "/api/vhosts/" + enc(vhost_)))
        throw Failure{kExitUnavailable, fmt::format("Error:\nVirtual host {} does not exist", vhost_)};
      if (!exists(api, user_path)) throw Failure{kExitNoUser, fmt::format("Error:\nUser {} does not exist", user_)};
      const std::string target = "/api/permissions/" + enc(vhost_) + "/" + enc(user_);
      if (set) {
        auto r = api.call("PUT", target, {{"configure", configure_}, {"write", write_}, {"read", read_}});
        if (r.status == 400) throw Failure{kExitUnavailable, "Error:\n" + reason_of(r)};
        expect(r, {201, 204});
      } else {
        expect(api.call("DELETE", target), {204, 404});  // none set: nothing to clear, as rabbitmqctl
      }
    } else if (cmd == "set_user_limits" || cmd == "clear_user_limits") {
      const bool set = cmd == "set_user_limits";
      if (set) say(fmt::format("Setting user limits to \"{}\" for user \"{}\" ...", description_, user_));
      else if (name_ == "all") say(fmt::format("Clearing all limits for user \"{}\" ...", user_));
      else say(fmt::format("Clearing \"{}\" limit for user \"{}\" ...", name_, user_));
      json definition = json::object();
      if (set) {
        definition = json::parse(description_, nullptr, false);
        if (definition.is_discarded())
          throw Failure{kExitUnavailable, "Error:\nJSON decoding error. Reason: badarg"};
      }
      // The whole definition in one change, so a bad limit leaves the others unset.
      auto r = set ? api.call("PUT", "/api/user-limits/" + enc(user_), definition)
                   : api.call("DELETE", "/api/user-limits/" + enc(user_) + "/" + enc(name_));
      if (r.status == 404) throw Failure{kExitUnavailable, fmt::format("Error:\n{{:no_such_user, \"{}\"}}", user_)};
      if (r.status == 400) throw Failure{kExitUnavailable, "Error:\n" + reason_of(r)};
      expect(r, {204});
    } else if (cmd == "list_permissions") {
      say(fmt::format("Listing permissions for vhost \"{}\" ...", vhost_));
      auto r = api.call("GET", "/api/vhosts/" + enc(vhost_) + "/permissions");
      if (r.status == 404) throw Failure{kExitDataErr, fmt::format("Virtual host '{}' does not exist", vhost_)};
      expect(r, {200});
      print_table(r.body, {"user", "configure", "write", "read"}, headers);
    } else if (cmd == "list_user_permissions") {
      say(fmt::format("Listing permissions for user \"{}\" ...", user_));
      auto r = api.call("GET", user_path + "/permissions");
      if (r.status == 404) throw Failure{kExitUnavailable, fmt::format("Error:\n{{:no_such_user, \"{}\"}}", user_)};
      expect(r, {200});
      print_table(r.body, {"vhost", "configure", "write", "read"}, headers);
    } else if (cmd == "list_queues") {
      auto cols = columns(args_, {"name", "messages"},
                          {"name", "durable", "auto_delete", "arguments", "policy", "exclusive", "messages_ready",
                           "messages_unacknowledged", "messages", "consumers", "state", "type", "message_bytes",
                           "message_bytes_ready", "messages_ram", "node", "vhost"});
      say(fmt::format("Timeout: 60.0 seconds ...\nListing queues for vhost {} ...", vhost_));
      auto r = api.call("GET", "/api/queues/" + enc(vhost_));
      if (r.status == 404) return 0;  // an unknown vhost has no queues, as rabbitmqctl
      expect(r, {200});
      print_table(r.body, cols, headers);
    } else if (cmd == "list_exchanges") {
      auto cols = columns(args_, {"name", "type"},
                          {"name", "type", "durable", "auto_delete", "internal", "arguments", "policy", "vhost"});
      say(fmt::format("Listing exchanges for vhost {} ...", vhost_));
      auto r = api.call("GET", "/api/exchanges/" + enc(vhost_));
      if (r.status == 404) return 0;
      expect(r, {200});
      print_table(r.body, cols, headers);
    } else if (cmd == "list_bindings") {
      auto cols = columns(args_, {"source_name", "source_kind", "destination_name", "destination_kind", "routing_key",
                                  "arguments"},
                          {"source_name", "source_kind", "destination_name", "destination_kind", "routing_key",
                           "arguments", "vhost"});
      say(fmt::format("Listing bindings for vhost {}...", vhost_));
      auto r = api.call("GET", "/api/bindings/" + enc(vhost_));
      if (r.status == 404) return 0;
      expect(r, {200});
      for (auto& b : r.body) b["source_kind"] = "exchange";
      print_table(r.body, cols, headers,
                  {{"source_name", "source"}, {"destination_name", "destination"}, {"destination_kind", "destination_type"}});
    } else if (cmd == "list_connections") {
      auto cols = columns(args_, {"user", "peer_host", "peer_port", "state"},
                          {"pid", "name", "user", "vhost", "state", "channels", "peer_host", "peer_port", "host", "port",
                           "protocol", "timeout", "frame_max", "channel_max", "connected_at", "node", "auth_mechanism",
                           "ssl"});
      say("Listing connections ...");
      auto r = api.call("GET", "/api/connections");
      expect(r, {200});
      print_table(r.body, cols, headers, {{"pid", "name"}});
    } else if (cmd == "list_channels") {
      auto cols = columns(args_, {"pid", "user", "consumer_count", "messages_unacknowledged"},
                          {"pid", "name", "number", "user", "vhost", "connection", "state", "consumer_count",
                           "messages_unacknowledged", "node"});
      say("Listing channels ...");
      auto r = api.call("GET", "/api/channels");
      expect(r, {200});
      for (auto& ch : r.body) ch["connection"] = ch["connection_details"]["name"];
      print_table(r.body, cols, headers, {{"pid", "name"}});
    } else if (cmd == "list_consumers") {
      auto cols = columns(args_, {"queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count",
                                  "active", "arguments"},
                          {"queue_name", "channel_pid", "consumer_tag", "ack_required", "prefetch_count", "active",
                           "activity_status", "exclusive", "arguments"});
      say(fmt::format("Listing consumers in vhost {} ...", vhost_));
      auto r = api.call("GET", "/api/consumers/" + enc(vhost_));
      if (r.status == 404) return 0;
      expect(r, {200});
      for (auto& c : r.body) {
        c["queue_name"] = c["queue"]["name"];
        c["channel_pid"] = c["channel_details"]["name"];
      }
      print_table(r.body, cols, headers);
    } else if (cmd == "purge_queue") {
      say(fmt::format("Purging queue '{}' in vhost '{}' ...", name_, vhost_));
      auto r = api.call("DELETE", "/api/queues/" + enc(vhost_) + "/" + enc(name_) + "/contents");
      if (r.status == 404) throw Failure{kExitUnavailable, "Error:\nnot_found"};
      expect(r, {204});
    } else if (cmd == "delete_queue") {
      const char* cond = if_empty_ && if_unused_ ? " if queue is empty and unused"
                         : if_empty_            ? " if queue is empty"
                         : if_unused_           ? " if queue is unused"
                                                : "";
      say(fmt::format("Deleting queue '{}' on vhost '{}'{} ...", name_, vhost_, cond));
      const std::string target = "/api/queues/" + enc(vhost_) + "/" + enc(name_);
      auto q = api.call("GET", target);
      if (q.status == 404) throw Failure{kExitUsage, "Error:\nQueue not found"};
      expect(q, {200});
      std::string query;
      if (if_empty_) query += "if-empty=true";
      if (if_unused_) query += std::string(query.empty() ? "" : "&") + "if-unused=true";
      auto r = api.call("DELETE", query.empty() ? target : target + "?" + query);
      expect(r, {204});
      say(fmt::format("Queue was successfully deleted with {} ready messages", q.body.value("messages_ready", 0)));
    } else if (cmd == "close_connection") {
      say(fmt::format("Closing connection {}, reason: {}...", name_, description_));
      auto r = api.call("DELETE", "/api/connections/" + enc(name_), nullptr, {{"X-Reason", description_}});
      if (r.status == 404) throw Failure{kExitUnavailable, fmt::format("Error:\nno connection named '{}'", name_)};
      expect(r, {204});
    } else if (cmd == "export_definitions") {
      if (path_ != "-") say(fmt::format("Exporting definitions in JSON to a file at \"{}\" ...", path_));
      auto r = api.call("GET", "/api/definitions");
      expect(r, {200});
      if (path_ == "-") {
        std::cout << r.text << "\n";
      } else {
        std::ofstream out(path_, std::ios::binary | std::ios::trunc);
        out << r.text;
        if (!out.flush())
          throw Failure{kExitCantCreate, fmt::format("Error:\ncannot write {}", path_)};
      }
    } else if (cmd == "import_definitions") {
      const std::string text = read_file(path_);
      if (path_ != "-") say(fmt::format("Importing definitions in JSON from a file at \"{}\" ...", path_));
      else say("Importing definitions in JSON from standard input ...");
      auto doc = json::parse(text, nullptr, false);
      if (doc.is_discarded())
        throw Failure{kExitDataErr, "Error:\nFailed to deserialise input (format: JSON) (error: not valid JSON)"};
      auto r = api.call("POST", "/api/definitions", doc);
      if (r.status != 204) throw Failure{kExitDataErr, "Error:\n" + reason_of(r)};
      say("Successfully imported definitions.");
    }
  } catch (const Failure& f) {
    std::cerr << f.message << "\n";
    return f.code;
  }
  return 0;
}

}  // namespace mqnode::app
