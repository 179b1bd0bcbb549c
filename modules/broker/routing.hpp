// Pure matching rules of the headers exchange (RabbitMQ semantics), kept apart from the
// exchange objects so they can be unit-tested on edge cases. Topic matching lives in the
// topic exchange's trie (exchange/topic_trie.hpp).
#pragma once

#include <string>
#include <string_view>

#include "amqp/field_table.hpp"

namespace mqnode::broker {

// Headers: binding <args> with x-match all (default) / any / all-with-x / any-with-x
// against the message <headers>. Binding keys starting with "x-" are ignored unless the
// "-with-x" variants are used. A void binding value matches any value of that key.
// Checks x-match at bind time; empty if valid, else RabbitMQ's 406 text.
std::string headers_binding_error(const amqp::FieldTable& binding_args);

bool headers_match(const amqp::FieldTable& binding_args, const amqp::FieldTable* headers);

}  // namespace mqnode::broker
