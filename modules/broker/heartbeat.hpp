// RabbitMQ's heartbeat rules for one connection, apart from its timer: the connection
// calls tick() once per negotiated interval, and tick() says whether to send a heartbeat
// frame and whether the peer is to be given up. Pure, so tests drive it without waiting.
#pragma once

namespace mqnode::broker {

class HeartbeatMonitor {
 public:
  // RabbitMQ gives up on a peer after this many silent intervals.
  static constexpr int kMissedLimit = 2;

  struct Tick {
    bool send_heartbeat = false;  // nothing went out during the interval
    bool peer_dead = false;       // kMissedLimit intervals without a byte from the peer
  };

  void sent() { sent_ = true; }
  void received() { received_ = true; }
  // The heartbeat frame tick() asked for went out (through the path that calls sent()): it
  // is not traffic of the next interval, which needs its own.
  void heartbeat_sent() { sent_ = false; }
  // <paused>: this side stopped reading the peer (a resource alarm, flow control), so its
  // silence is ours and does not count (RabbitMQ pauses its monitor too).
  Tick tick(bool paused) {
    Tick t;
    t.send_heartbeat = !sent_;
    sent_ = false;
    missed_ = received_ || paused ? 0 : missed_ + 1;
    received_ = false;
    t.peer_dead = missed_ >= kMissedLimit;
    return t;
  }

 private:
  bool received_ = true;  // the handshake that negotiated the interval
  bool sent_ = false;
  int missed_ = 0;
};

}  // namespace mqnode::broker
