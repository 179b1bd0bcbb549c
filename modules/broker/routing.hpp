// Pure matching rules of the topic and headers exchanges (RabbitMQ semantics), kept apart
// from the exchange objects so they can be unit-tested on edge cases.
#pragma once

#include <string>
#include <string_view>

#include "amqp/field_table.hpp"

namespace mqnode::broker {

// Topic: words separated by '.', '*' matches exactly one word (possibly empty), '#' zero or
// more words. "" has no words (so "*" does not match it), while "a..b" has three.
bool topic_matches(std::string_view pattern, std::string_view routing_key);

// Headers: binding <args> with x-match all (default) / any / all-with-x / any-with-x
// against the message <headers>. Binding keys starting with "x-" are ignored unless the
// "-with-x" variants are used. A void binding value matches any value of that key.
// Checks x-match at bind time; empty if valid, else RabbitMQ's 406 text.
std::string headers_binding_error(const amqp::FieldTable& binding_args);

bool headers_match(const amqp::FieldTable& binding_args, const amqp::FieldTable* headers);

}  // namespace mqnode::broker
