// HAProxy's runtime API verbs on the live backends and servers (the stats listener's POST
// and `mqnode ctl`): enable/disable, drain, weights, `show stat`.
#pragma once

#include <string>
#include <string_view>

namespace mqnode::lb {

class LbModule;

// Runs one HAProxy runtime API command line ("disable server be/srv", "set server be/srv
// state drain", "set weight be/srv 50", "get weight be/srv", "show stat") and returns
// what HAProxy's CLI would print ("" on success for the set verbs).
std::string run_command(LbModule& lb, std::string_view line);

}  // namespace mqnode::lb
