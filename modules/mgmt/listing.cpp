#include "mgmt/listing.hpp"

#include <algorithm>
#include <cctype>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "mgmt/http_api.hpp"

namespace mqnode::mgmt {

namespace {

std::string param(const std::map<std::string, std::string>& params, const std::string& key) {
  auto it = params.find(key);
  return it == params.end() ? std::string() : it->second;
}

// The value at dotted <path> in <item>, or null.
const nlohmann::json& at_path(const nlohmann::json& item, const std::string& path) {
  static const nlohmann::json kNull;
  const nlohmann::json* cur = &item;
  std::size_t start = 0;
  for (;;) {
    auto dot = path.find('.', start);
    auto key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!cur->is_object()) return kNull;
    auto it = cur->find(key);
    if (it == cur->end()) return kNull;
    cur = &*it;
    if (dot == std::string::npos) return *cur;
    start = dot + 1;
  }
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

[[noreturn]] void invalid_pagination() { throw ApiError(400, "bad_request", "Pagination parameters are invalid"); }

int64_t positive(const std::string& text) {
  if (text.empty() || text.size() > 9 || !std::all_of(text.begin(), text.end(), ::isdigit)) invalid_pagination();
  return std::stoll(text);
}

}  // namespace

nlohmann::json apply_list_query(nlohmann::json items, const std::map<std::string, std::string>& params) {
  if (!items.is_array()) return items;
  // Sorting: stable, so equal keys keep the order the API listed them in.
  std::vector<std::string> keys{"vhost", "name"};
  if (auto s = param(params, "sort"); !s.empty()) keys = {s};
  const bool reverse = param(params, "sort_reverse") == "true";
  auto& vec = items.get_ref<nlohmann::json::array_t&>();
  std::stable_sort(vec.begin(), vec.end(), [&](const nlohmann::json& a, const nlohmann::json& b) {
    for (const auto& k : keys) {
      const auto& x = at_path(a, k);
      const auto& y = at_path(b, k);
      if (x == y) continue;
      return reverse ? y < x : x < y;
    }
    return false;
  });

  nlohmann::json page_object;
  const bool paged = params.count("page") > 0;
  if (paged) {
    const std::string page_text = param(params, "page"), size_text = param(params, "page_size");
    int64_t page = positive(page_text);
    int64_t page_size = size_text.empty() ? 100 : positive(size_text);
    if (page < 1 || page_size < 1 || page_size > 500)
      throw ApiError(400, "invalid_pagination_parameters",
                     fmt::format("Invalid pagination parameters: page number {}, page size {}", page,
                                 size_text.empty() ? std::string("undefined") : size_text));
    const auto total = static_cast<int64_t>(vec.size());
    if (total > 0 && (page - 1) * page_size >= total)
      throw ApiError(400, "page_out_of_range",
                     fmt::format("Page out of range, page: {} page size: {}, len: {}", page, page_size, total));
    if (auto name = param(params, "name"); !name.empty()) {
      std::function<bool(const std::string&)> match;
      if (param(params, "use_regex") == "true") {
        std::regex re;
        try {
          re = std::regex(name, std::regex::ECMAScript | std::regex::icase);
        } catch (const std::regex_error&) {
          invalid_pagination();
        }
        match = [re](const std::string& s) { return std::regex_search(s, re); };
      } else {
        match = [n = lower(name)](const std::string& s) { return lower(s).find(n) != std::string::npos; };
      }
      std::erase_if(vec, [&](const nlohmann::json& item) {
        const auto& v = at_path(item, "name");
        return !v.is_string() || !match(v.get<std::string>());
      });
    }
    const auto filtered = static_cast<int64_t>(vec.size());
    auto first = std::min(filtered, (page - 1) * page_size);
    auto last = std::min(filtered, first + page_size);
    nlohmann::json::array_t slice(vec.begin() + first, vec.begin() + last);
    page_object = {{"filtered_count", filtered},
                   {"item_count", last - first},
                   {"page", page},
                   {"page_count", (filtered + page_size - 1) / page_size},
                   {"page_size", page_size},
                   {"total_count", total}};
    items = std::move(slice);
  }

  if (auto cols = param(params, "columns"); !cols.empty()) {
    std::set<std::string> keep;
    std::size_t start = 0;
    for (;;) {
      auto comma = cols.find(',', start);
      auto col = cols.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      keep.insert(col.substr(0, col.find('.')));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    for (auto& item : items) {
      if (!item.is_object()) continue;
      nlohmann::json cut = nlohmann::json::object();
      for (const auto& k : keep)
        if (auto it = item.find(k); it != item.end()) cut[k] = *it;
      item = std::move(cut);
    }
  }
  if (!paged) return items;
  page_object["items"] = std::move(items);
  return page_object;
}

}  // namespace mqnode::mgmt
