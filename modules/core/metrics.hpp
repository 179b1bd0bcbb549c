// Prometheus text exposition (format 0.0.4), written by every module into one scrape.
// Modules keep their counters where they live (X-macro structs) and describe them here in
// Module::metrics(); the mgmt module serves the concatenation at /metrics, and lb's stats
// listener reuses the same writer for its own endpoint.
#pragma once

#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <utility>

namespace mqnode::core {

class MetricsWriter {
 public:
  enum class Type { Counter, Gauge };
  using Label = std::pair<std::string_view, std::string_view>;

  // Starts the family <name> ("mqnode_vrrp_adverts_sent_total"): writes # HELP and # TYPE.
  // A family already started in this scrape is not announced twice (two modules, or two
  // instances of one, may add samples to the same family one after the other).
  void family(std::string_view name, Type type, std::string_view help);
  // One sample of the current family; label values are escaped as the format requires.
  void sample(std::initializer_list<Label> labels, double value);
  void sample(double value) { sample({}, value); }

  const std::string& text() const { return out_; }

 private:
  std::string out_;
  std::string current_;
  std::set<std::string, std::less<>> announced_;
};

// The content type of the text format, for HTTP responses.
inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace mqnode::core
