#include <doctest/doctest.h>

#include "broker/auth.hpp"

using namespace mqnode::broker;

TEST_CASE("password hashes use RabbitMQ's salted SHA-256 layout") {
  // The example from RabbitMQ's documentation (passwords.html) for "test12".
  const char* rabbit = "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR";
  CHECK(valid_password_hash(rabbit));
  CHECK(check_password(rabbit, "test12"));
  CHECK_FALSE(check_password(rabbit, "test13"));

  auto h1 = hash_password("secret"), h2 = hash_password("secret");
  CHECK(h1 != h2);  // random salt
  CHECK(check_password(h1, "secret"));
  CHECK(check_password(h2, "secret"));
  CHECK_FALSE(check_password(h1, ""));
  CHECK_FALSE(valid_password_hash("not base64!"));
  CHECK_FALSE(valid_password_hash("c2hvcnQ="));
  CHECK_FALSE(check_password("c2hvcnQ=", "short"));
}

TEST_CASE("logins, loopback-only users and permission regexes") {
  AccessControl ac({"guest"});
  ac.put_user("guest", hash_password("guest"), {});
  ac.put_user("alice", hash_password("pw"), {});
  ac.set_permissions("guest", "/", {".*", ".*", ".*"});
  ac.set_permissions("alice", "/", {"^alice\\.", "", "^(alice\\.|amq\\.default$)"});
  std::string why;

  CHECK(ac.authenticate("guest", "guest", true, why));
  CHECK_FALSE(ac.authenticate("guest", "guest", false, why));
  CHECK(why == "user can only log in via localhost");
  CHECK_FALSE(ac.authenticate("guest", "nope", true, why));
  CHECK(why == "invalid credentials");
  CHECK_FALSE(ac.authenticate("nobody", "x", true, why));
  CHECK(ac.authenticate("alice", "pw", false, why));

  CHECK(ac.can_access_vhost("alice", "/"));
  CHECK_FALSE(ac.can_access_vhost("alice", "other"));
  CHECK(ac.permitted("alice", "/", Permission::Configure, "alice.q"));
  CHECK_FALSE(ac.permitted("alice", "/", Permission::Configure, "bob.q"));
  CHECK_FALSE(ac.permitted("alice", "/", Permission::Write, "alice.q"));  // "" grants nothing
  CHECK(ac.permitted("alice", "/", Permission::Read, ""));               // default exchange is amq.default
  CHECK_FALSE(ac.permitted("alice", "other", Permission::Read, "alice.q"));

  SUBCASE("deleting a user or a vhost takes its permissions along") {
    ac.delete_vhost("/");
    CHECK_FALSE(ac.can_access_vhost("alice", "/"));
    ac.set_permissions("alice", "other", {".*", ".*", ".*"});
    CHECK(ac.delete_user("alice"));
    CHECK_FALSE(ac.authenticate("alice", "pw", true, why));
    CHECK(ac.permissions().empty());  // "/" took guest's and alice's grants, alice took hers on "other"
  }
}
