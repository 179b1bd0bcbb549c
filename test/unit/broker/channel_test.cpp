// Channel behaviour over a frame sink: the channel is driven with decoded methods and
// content as the connection would hand them over, and what it writes is decoded back.
#include <doctest/doctest.h>

#include "amqp/codec.hpp"
#include "amqp/frame.hpp"
#include "amqp/properties.hpp"
#include "amqp/reply_code.hpp"
#include "broker/broker.hpp"
#include "broker/channel.hpp"
#include "support/held_change_log.hpp"
#include "support/temp_store.hpp"

using namespace mqnode::broker;
namespace amqp = mqnode::amqp;

namespace {

// One node's broker (memory only): vhost "/" where guest may do anything.
BrokerConfig guest_config() {
  BrokerConfig cfg;
  cfg.users = {{"guest", hash_password("guest"), {}}};
  cfg.permissions = {{"guest", "/", ".*", ".*", ".*"}};
  return cfg;
}
struct Node {
  asio::io_context io;
  Broker broker{io, guest_config(), mqnode::test::quiet_log(), nullptr};
  Node() { broker.load(nullptr); }
};

// A connection without a socket: frames the channel writes land in out_; exceptions are
// recorded as the closes the connection would send.
class FakeConnection final : public ChannelHost {
 public:
  FakeConnection(Node& node, uint64_t id) : node_(node), id_(id) { caps_.consumer_cancel_notify = true; }

  struct Close {
    uint16_t channel, code;
    std::string text;
    bool connection;
  };
  std::vector<Close> closes;

  Channel& open(uint16_t id) {
    auto [it, fresh] = channels_.emplace(id, std::make_unique<Channel>(*this, id));
    REQUIRE(fresh);
    return *it->second;
  }

  // A method from the client, through the same path a socket's frames take: while the
  // channel waits for a proposal, it is stashed.
  template <class M>
  void receive(uint16_t channel, const M& m) {
    std::vector<uint8_t> wire;
    amqp::append_method_frame(wire, channel, m);
    amqp::FrameView f;
    std::size_t used = 0;
    REQUIRE(amqp::decode_frame(wire, 1 << 20, used, f) == amqp::DecodeStatus::Ok);
    dispatch(f);
  }
  // basic.publish with its header and one body frame.
  void publish(uint16_t channel, const std::string& exchange, const std::string& key, const std::string& body) {
    amqp::BasicPublish p;
    p.exchange = exchange;
    p.routing_key = key;
    receive(channel, p);
    std::vector<uint8_t> props;
    amqp::encode_properties({}, props);
    Channel& ch = *channels_.at(channel);
    run_guarded(channel, [&] {
      ch.handle_header({amqp::BasicPublish::kClassId, body.size(), props, 0});
      if (!body.empty()) ch.handle_body({reinterpret_cast<const uint8_t*>(body.data()), body.size()});
    });
    ch.flush_confirms();
  }

  // The methods written since the last call, decoded (content frames skipped).
  std::vector<amqp::Method> take_methods() {
    std::vector<amqp::Method> out;
    std::span<const uint8_t> in(out_);
    while (!in.empty()) {
      amqp::FrameView f;
      std::size_t used = 0;
      REQUIRE(amqp::decode_frame(in, 1 << 20, used, f) == amqp::DecodeStatus::Ok);
      if (f.type == amqp::FrameType::Method) out.push_back(amqp::decode_method(f.payload));
      in = in.subspan(used);
    }
    out_.clear();
    return out;
  }

  // ChannelHost
  Broker& broker() override { return node_.broker; }
  Vhost& vhost() override { return *node_.broker.find_vhost("/"); }
  const std::string& user() const override { return user_; }
  uint64_t id() const override { return id_; }
  const ClientCapabilities& capabilities() const override { return caps_; }
  uint32_t frame_max() const override { return 131072; }
  std::vector<uint8_t>& out() override { return out_; }
  void flush() override {}
  bool output_congested() override { return false; }
  void note_publish() override {}
  void own_exclusive_queue(const std::string& name) override { exclusive_.push_back(name); }
  void run_guarded(uint16_t channel, const std::function<void()>& f) override {
    try {
      f();
    } catch (const amqp::ChannelError& e) {
      closes.push_back({channel, static_cast<uint16_t>(e.code), e.what(), false});
      channels_.at(channel)->release();
    } catch (const amqp::ConnectionError& e) {
      closes.push_back({channel, static_cast<uint16_t>(e.code), e.what(), true});
    }
  }
  void resume_channel(uint16_t id) override {
    Channel& ch = *channels_.at(id);
    while (!ch.waiting()) {
      auto f = ch.unstash();
      if (!f) break;
      dispatch({f->type, id, f->payload});
    }
  }
  const std::vector<std::string>& exclusive_queues() const { return exclusive_; }

 private:
  void dispatch(const amqp::FrameView& f) {
    Channel& ch = *channels_.at(f.channel);
    if (ch.waiting()) {
      ch.stash(f);
      return;
    }
    run_guarded(f.channel, [&] {
      auto m = amqp::decode_method(f.payload);
      ch.handle_method(m);
    });
    ch.flush_confirms();
  }

  Node& node_;
  uint64_t id_;
  std::string user_ = "guest";
  ClientCapabilities caps_;
  std::vector<uint8_t> out_;
  std::map<uint16_t, std::unique_ptr<Channel>> channels_;
  std::vector<std::string> exclusive_;
};

template <class M>
const M& expect(const amqp::Method& m) {
  const M* got = std::get_if<M>(&m);
  REQUIRE_MESSAGE(got != nullptr, "unexpected method index " << m.index());
  return *got;
}

amqp::QueueDeclare declare(std::string name, bool exclusive = false) {
  amqp::QueueDeclare d;
  d.queue = std::move(name);
  d.exclusive = exclusive;
  return d;
}

}  // namespace

TEST_CASE("queue.declare, bind and delete through the catalog, answered on the frame sink") {
  Node node;
  FakeConnection conn(node, 1);
  conn.open(1);
  conn.receive(1, declare(""));
  auto out = conn.take_methods();
  REQUIRE(out.size() == 1);
  std::string name = expect<amqp::QueueDeclareOk>(out[0]).queue;
  CHECK(name.starts_with("amq.gen-"));  // the server names it; the amq. rule is for clients

  amqp::QueueBind bind;  // queue "" is the last declared (§1.8.3.7)
  bind.exchange = "amq.direct";
  bind.routing_key = "k";
  conn.receive(1, bind);
  expect<amqp::QueueBindOk>(conn.take_methods().at(0));
  CHECK(node.broker.find_vhost("/")->find_exchange("amq.direct")->bindings().size() == 1);

  conn.publish(1, "amq.direct", "k", "hello");
  amqp::QueueDelete del;
  conn.receive(1, del);
  CHECK(expect<amqp::QueueDeleteOk>(conn.take_methods().at(0)).message_count == 1);
  CHECK(node.broker.find_vhost("/")->find_queue(name) == nullptr);
  CHECK(conn.closes.empty());
}

TEST_CASE("another connection's exclusive queue is locked; the owner's channel may use it") {
  Node node;
  FakeConnection owner(node, 1), other(node, 2);
  owner.open(1);
  other.open(1);
  owner.receive(1, declare("excl", true));
  expect<amqp::QueueDeclareOk>(owner.take_methods().at(0));
  CHECK(owner.exclusive_queues() == std::vector<std::string>{"excl"});

  other.receive(1, declare("excl"));
  REQUIRE(other.closes.size() == 1);
  CHECK(other.closes[0].code == 405);
  CHECK_FALSE(other.closes[0].connection);
  CHECK(other.take_methods().empty());

  owner.receive(1, declare("excl"));  // the owner redeclares without the flag
  expect<amqp::QueueDeclareOk>(owner.take_methods().at(0));
  CHECK(owner.closes.empty());
}

TEST_CASE("a refused change closes the channel with the catalog's code and text") {
  Node node;
  FakeConnection conn(node, 1);
  conn.open(1);
  amqp::ExchangeDeclare ex;
  ex.exchange = "e";
  ex.type = "direct";
  conn.receive(1, ex);
  expect<amqp::ExchangeDeclareOk>(conn.take_methods().at(0));
  ex.type = "topic";
  conn.receive(1, ex);
  REQUIRE(conn.closes.size() == 1);
  CHECK(conn.closes[0].code == 406);
  CHECK(conn.closes[0].text ==
        "inequivalent arg 'type' for exchange 'e' in vhost '/': received 'topic' but current is 'direct'");
}

TEST_CASE("frames wait behind a method whose proposal is outstanding, and keep their order") {
  mqnode::test::HeldChangeLog log;
  Node node;
  Catalog& catalog = node.broker.catalog();
  catalog.set_change_log(&log);
  FakeConnection conn(node, 1);
  Channel& ch = conn.open(1);
  auto deliver_next = [&] { log.deliver_next(catalog); };

  conn.receive(1, declare("q"));
  amqp::QueueBind bind;
  bind.queue = "q";
  bind.exchange = "amq.fanout";
  conn.receive(1, bind);
  conn.receive(1, amqp::BasicQos{0, 10, false});  // no proposal, but it must not overtake
  CHECK(ch.waiting());
  CHECK(conn.take_methods().empty());
  CHECK(log.held.size() == 1);  // the bind is not even proposed before the declare is done

  deliver_next();  // the declare applies; the bind is proposed and waits in turn
  auto out = conn.take_methods();
  REQUIRE(out.size() == 1);
  expect<amqp::QueueDeclareOk>(out[0]);
  CHECK(ch.waiting());

  deliver_next();
  out = conn.take_methods();
  REQUIRE(out.size() == 2);
  expect<amqp::QueueBindOk>(out[0]);
  expect<amqp::BasicQosOk>(out[1]);
  CHECK_FALSE(ch.waiting());
  CHECK(conn.closes.empty());
}

TEST_CASE("a proposal whose outcome is unknown closes the channel, never reports success") {
  struct FailingLog : ChangeLog {
    void submit(const Change&, ProposeDone done) override {
      done(ChangeResult::error(static_cast<uint16_t>(amqp::ConnectionReplyCode::InternalError),
                               "leadership lost while the change was in flight; its outcome is unknown, retry"));
    }
  } log;
  Node node;
  node.broker.catalog().set_change_log(&log);
  FakeConnection conn(node, 1);
  conn.open(1);
  conn.receive(1, declare("q"));
  CHECK(conn.take_methods().empty());  // no declare-ok
  REQUIRE(conn.closes.size() == 1);
  CHECK(conn.closes[0].code == 541);
  CHECK(conn.closes[0].connection);
}

TEST_CASE("publish with confirms, consume, ack: every step on the frame sink") {
  Node node;
  FakeConnection conn(node, 1);
  conn.open(1);
  conn.receive(1, declare("work"));
  conn.receive(1, amqp::ConfirmSelect{});
  conn.take_methods();
  conn.publish(1, "", "work", "one");
  conn.publish(1, "", "nowhere", "two");  // unroutable but confirmed
  auto out = conn.take_methods();
  REQUIRE(out.size() == 2);
  CHECK(expect<amqp::BasicAck>(out[0]).delivery_tag == 1);
  CHECK(expect<amqp::BasicAck>(out[1]).delivery_tag == 2);

  amqp::BasicConsume consume;
  consume.queue = "work";
  consume.consumer_tag = "c1";
  conn.receive(1, consume);
  out = conn.take_methods();
  REQUIRE(out.size() == 2);
  expect<amqp::BasicConsumeOk>(out[0]);
  const auto& d = expect<amqp::BasicDeliver>(out[1]);
  CHECK(d.consumer_tag == "c1");
  CHECK(d.routing_key == "work");
  auto q = node.broker.find_vhost("/")->find_local_queue("work");
  CHECK(q->message_count() == 0);

  amqp::BasicAck ack;
  ack.delivery_tag = d.delivery_tag;
  conn.receive(1, ack);
  ack.delivery_tag = 99;  // unknown: 406, the channel closes
  conn.receive(1, ack);
  REQUIRE(conn.closes.size() == 1);
  CHECK(conn.closes[0].code == 406);
  CHECK(conn.closes[0].text == "unknown delivery tag 99");
}
