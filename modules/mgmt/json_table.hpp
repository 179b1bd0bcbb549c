// AMQP field tables as the management API shows and reads them (RabbitMQ's JSON forms of
// queue, exchange and binding arguments and message headers), and message properties.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "amqp/field_table.hpp"
#include "amqp/properties.hpp"

namespace mqnode::mgmt {

// Integers, strings, booleans, floats, nested tables and arrays as JSON; byte arrays as
// strings, decimals as numbers, timestamps as seconds, void as null.
nlohmann::json table_to_json(const amqp::FieldTable& t);
nlohmann::json value_to_json(const amqp::FieldValue& v);

// The reverse, as RabbitMQ's management API types a JSON argument: an integer becomes a
// signed 64-bit 'l', a float a double, a string a long string, an object a table, an array
// an array, null void. Throws std::invalid_argument when <j> is not an object (naming <what>).
amqp::FieldTable json_to_table(const nlohmann::json& j, const std::string& what);
amqp::FieldValue json_to_value(const nlohmann::json& j);

// The properties RabbitMQ shows for a message ("content_type", "headers", "delivery_mode",
// ...), set ones only.
nlohmann::json properties_to_json(const amqp::BasicProperties& p);
// The reverse, for POST /api/exchanges/{vhost}/{name}/publish; throws std::invalid_argument
// naming the bad property.
amqp::BasicProperties json_to_properties(const nlohmann::json& j);

// A short stable digest of <t> (base64url, no padding): the part of a binding's
// properties key that stands for its arguments.
std::string table_digest(const amqp::FieldTable& t);

}  // namespace mqnode::mgmt

namespace mqnode::mgmt {
// Standard base64 with padding (message payloads that are not UTF-8).
std::string base64_encode(std::string_view bytes);
// True when <s> is well-formed UTF-8.
bool valid_utf8(std::string_view s);
}  // namespace mqnode::mgmt
