// What a Channel needs from the connection that carries it: the session (broker, vhost,
// user, negotiated limits), a frame sink, and the one place where channel and connection
// exceptions become closes. Connection implements it over a socket; unit tests implement
// it over a buffer, so channel behaviour is tested without one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mqnode::broker {

class Broker;
class Vhost;

// Capabilities the client declared in client-properties; RabbitMQ only sends these
// extensions to clients that asked for them.
struct ClientCapabilities {
  bool consumer_cancel_notify = false;
  bool connection_blocked = false;
  bool authentication_failure_close = false;
  bool basic_nack = false;
  bool publisher_confirms = false;
};

class ChannelHost {
 public:
  virtual ~ChannelHost() = default;

  virtual Broker& broker() = 0;
  virtual Vhost& vhost() = 0;
  virtual const std::string& user() const = 0;
  virtual uint64_t id() const = 0;  // the connection's id on this node
  virtual const ClientCapabilities& capabilities() const = 0;
  virtual uint32_t frame_max() const = 0;

  // The frame sink: channels append whole frames to out() and call flush().
  virtual std::vector<uint8_t>& out() = 0;
  virtual void flush() = 0;
  // True while the peer is not keeping up; deliveries pause and resume on drain.
  virtual bool output_congested() = 0;

  // A message was published: the connection is a publisher from now on (resource alarms).
  virtual void note_publish() = 0;
  // Exclusive queues die with their connection.
  virtual void own_exclusive_queue(const std::string& name) = 0;

  // Runs <f> for <channel>, turning the channel and connection exceptions it throws into
  // channel.close / connection.close (for work that completes after its frame was handled).
  virtual void run_guarded(uint16_t channel, const std::function<void()>& f) = 0;
  // <channel> stopped waiting for a proposal: hand it the frames stashed meanwhile.
  virtual void resume_channel(uint16_t channel) = 0;
};

}  // namespace mqnode::broker
