#include "core/metrics.hpp"

#include <cmath>

#include <fmt/format.h>

namespace mqnode::core {

namespace {

void append_escaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
}

void append_value(std::string& out, double v) {
  if (std::isnan(v)) out += "NaN";
  else if (std::isinf(v)) out += v > 0 ? "+Inf" : "-Inf";
  else if (v == std::floor(v) && std::fabs(v) < 1e15) out += fmt::format("{}", static_cast<long long>(v));
  else out += fmt::format("{}", v);
}

}  // namespace

void MetricsWriter::family(std::string_view name, Type type, std::string_view help) {
  current_.assign(name);
  if (!announced_.insert(current_).second) return;
  out_ += fmt::format("# HELP {} ", name);
  for (char c : help) out_ += c == '\n' ? ' ' : c;
  out_ += fmt::format("\n# TYPE {} {}\n", name, type == Type::Counter ? "counter" : "gauge");
}

void MetricsWriter::sample(std::initializer_list<Label> labels, double value) {
  out_ += current_;
  if (labels.size() != 0) {
    out_ += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      append_escaped(out_, v);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  append_value(out_, value);
  out_ += '\n';
}

}  // namespace mqnode::core
