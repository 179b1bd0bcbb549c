// RabbitMQ's heartbeat rules, one tick per negotiated interval, without a clock.
#include <doctest/doctest.h>

#include "broker/heartbeat.hpp"

using mqnode::broker::HeartbeatMonitor;

TEST_CASE("heartbeats: a frame goes out only in an interval with nothing else sent") {
  HeartbeatMonitor m;
  m.received();
  CHECK(m.tick(false).send_heartbeat);
  m.heartbeat_sent();
  m.received();
  CHECK(m.tick(false).send_heartbeat);  // the heartbeat itself does not cover the next interval
  m.sent();
  m.received();
  CHECK_FALSE(m.tick(false).send_heartbeat);
  m.received();
  CHECK(m.tick(false).send_heartbeat);
}

TEST_CASE("heartbeats: a peer is given up after two silent intervals, and any byte resets the count") {
  HeartbeatMonitor m;
  // The handshake counts as heard: the first interval after it is not silent.
  CHECK_FALSE(m.tick(false).peer_dead);
  CHECK_FALSE(m.tick(false).peer_dead);  // one silent interval
  m.received();
  CHECK_FALSE(m.tick(false).peer_dead);
  CHECK_FALSE(m.tick(false).peer_dead);  // one silent interval again
  CHECK(m.tick(false).peer_dead);        // two
}

TEST_CASE("heartbeats: while this side does not read the peer (alarm, flow), its silence does not count") {
  HeartbeatMonitor m;
  for (int i = 0; i < 10; ++i) CHECK_FALSE(m.tick(true).peer_dead);
  CHECK_FALSE(m.tick(false).peer_dead);
  CHECK(m.tick(false).peer_dead);
}
