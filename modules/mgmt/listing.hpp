// RabbitMQ's list parameters for every GET that returns a list: sort / sort_reverse,
// columns, and pagination (page, page_size) with the name filter (name, use_regex), in
// the shapes and with the errors of rabbit_mgmt_util.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mqnode::mgmt {

// <items>: a JSON array of objects. Without "page" the result is the array, sorted (by
// <sort> — dotted keys reach into objects — else by vhost then name), and cut to
// <columns> (top-level keys; "a.b" keeps "a"). With "page" it is RabbitMQ's page object
// {filtered_count, item_count, items, page, page_count, page_size, total_count}, where
// "name" filters case-insensitively (a substring, or a regex with use_regex=true).
// Throws ApiError 400 with RabbitMQ's error and reason for bad parameters.
nlohmann::json apply_list_query(nlohmann::json items, const std::map<std::string, std::string>& params);

}  // namespace mqnode::mgmt
