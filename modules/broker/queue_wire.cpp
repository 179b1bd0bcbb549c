#include "broker/queue_wire.hpp"

#include <fmt/format.h>

#include "amqp/codec.hpp"

namespace mqnode::broker::wire {

namespace {

void put(amqp::Writer& w, const Message& m) {
  w.shortstr(m.exchange);
  w.shortstr(m.routing_key);
  w.longstr(std::string_view(reinterpret_cast<const char*>(m.properties.data()), m.properties.size()));
  w.longstr(std::string_view(reinterpret_cast<const char*>(m.body.data()), m.body.size()));
  w.u8(m.persistent);
  w.u8(m.priority);
  w.u64(static_cast<uint64_t>(m.ttl_ms));
}

// One encoding per value, so a frame re-encodes to its own bytes: a flag is 0 or 1.
bool flag(amqp::Reader& r) {
  const uint8_t b = r.u8();
  if (b > 1) throw DecodeError(fmt::format("flag byte {} is neither 0 nor 1", b));
  return b == 1;
}

Message get_message(amqp::Reader& r) {
  Message m;
  m.exchange = r.shortstr();
  m.routing_key = r.shortstr();
  auto bytes = [&] {
    auto n = r.u32();
    auto b = r.bytes(n);
    return std::vector<uint8_t>(b.begin(), b.end());
  };
  m.properties = bytes();
  m.body = bytes();
  m.persistent = flag(r);
  m.priority = r.u8();
  m.ttl_ms = static_cast<int64_t>(r.u64());
  return m;
}



struct Encoder {
  amqp::Writer& w;
  void operator()(const Publish& f) {
    w.u8(1);
    w.shortstr(f.vhost);
    w.shortstr(f.queue);
    w.u64(f.token);
    put(w, f.msg);
  }
  void operator()(const Subscribe& f) {
    w.u8(2);
    w.u64(f.request);
    w.shortstr(f.vhost);
    w.shortstr(f.queue);
    w.u64(f.consumer);
    w.u8(static_cast<uint8_t>(f.exclusive | f.no_ack << 1 | f.credit_on_settle << 2));
    w.u64(static_cast<uint64_t>(f.priority));
    w.u32(f.window);
  }
  void operator()(const Cancel& f) {
    w.u8(3);
    w.u64(f.consumer);
  }
  void operator()(const Credit& f) {
    w.u8(4);
    w.u64(f.consumer);
    w.u32(f.count);
  }
  void operator()(const Settle& f) {
    w.u8(5);
    w.u8(static_cast<uint8_t>(f.kind));
    w.u32(static_cast<uint32_t>(f.tags.size()));
    for (auto t : f.tags) w.u64(t);
  }
  void operator()(const Request& f) {
    w.u8(6);
    w.u8(static_cast<uint8_t>(f.kind));
    w.u64(f.request);
    w.shortstr(f.vhost);
    w.shortstr(f.queue);
  }
  void operator()(const Reply& f) {
    w.u8(7);
    w.u64(f.request);
    w.u16(f.code);
    w.longstr(f.text);
    w.u64(f.messages);
    w.u64(f.consumers);
    w.u8(f.fetched.has_value());
    if (f.fetched) {
      w.u64(f.fetched->tag);
      w.u8(f.fetched->redelivered);
      put(w, f.fetched->msg);
    }
  }
  void operator()(const Published& f) {
    w.u8(8);
    w.u64(f.token);
    w.u8(f.ok);
  }
  void operator()(const Deliver& f) {
    w.u8(9);
    w.u64(f.consumer);
    w.u64(f.tag);
    w.u8(f.redelivered);
    put(w, f.msg);
  }
  void operator()(const Cancelled& f) {
    w.u8(10);
    w.u64(f.consumer);
  }
};

Frame decode_body(amqp::Reader& r) {
  const uint8_t kind = r.u8();
  switch (kind) {
    case 1: {
      Publish f;
      f.vhost = r.shortstr();
      f.queue = r.shortstr();
      f.token = r.u64();
      f.msg = get_message(r);
      return f;
    }
    case 2: {
      Subscribe f;
      f.request = r.u64();
      f.vhost = r.shortstr();
      f.queue = r.shortstr();
      f.consumer = r.u64();
      const uint8_t flags = r.u8();
      if (flags > 7) throw DecodeError(fmt::format("subscribe flags {} has unknown bits", flags));
      f.exclusive = flags & 1;
      f.no_ack = flags & 2;
      f.credit_on_settle = flags & 4;
      f.priority = static_cast<int64_t>(r.u64());
      f.window = r.u32();
      return f;
    }
    case 3:
      return Cancel{r.u64()};
    case 4: {
      Credit f;
      f.consumer = r.u64();
      f.count = r.u32();
      return f;
    }
    case 5: {
      Settle f;
      const uint8_t k = r.u8();
      if (k < 1 || k > 3) throw DecodeError(fmt::format("unknown settlement kind {}", k));
      f.kind = static_cast<SettleKind>(k);
      const uint32_t n = r.u32();
      if (n > r.remaining() / 8) throw DecodeError(fmt::format("settlement of {} tags in a short frame", n));
      f.tags.reserve(n);
      for (uint32_t i = 0; i < n; ++i) f.tags.push_back(r.u64());
      return f;
    }
    case 6: {
      Request f;
      const uint8_t k = r.u8();
      if (k < 1 || k > 4) throw DecodeError(fmt::format("unknown request kind {}", k));
      f.kind = static_cast<RequestKind>(k);
      f.request = r.u64();
      f.vhost = r.shortstr();
      f.queue = r.shortstr();
      return f;
    }
    case 7: {
      Reply f;
      f.request = r.u64();
      f.code = r.u16();
      f.text = r.longstr();
      f.messages = r.u64();
      f.consumers = r.u64();
      if (flag(r)) {
        Fetched m;
        m.tag = r.u64();
        m.redelivered = flag(r);
        m.msg = get_message(r);
        f.fetched = std::move(m);
      }
      return f;
    }
    case 8: {
      Published f;
      f.token = r.u64();
      f.ok = flag(r);
      return f;
    }
    case 9: {
      Deliver f;
      f.consumer = r.u64();
      f.tag = r.u64();
      f.redelivered = flag(r);
      f.msg = get_message(r);
      return f;
    }
    case 10:
      return Cancelled{r.u64()};
    default:
      throw DecodeError(fmt::format("unknown queue frame kind {}", kind));
  }
}

}  // namespace

void encode(const Frame& f, std::vector<uint8_t>& out) {
  amqp::Writer w(out);
  std::visit(Encoder{w}, f);
}

Frame decode(std::span<const uint8_t> payload) {
  amqp::Reader r(payload);
  Frame f;
  try {
    f = decode_body(r);
  } catch (const amqp::DecodeError& e) {
    throw DecodeError(fmt::format("malformed queue frame: {}", e.what()));
  }
  if (r.remaining() != 0) throw DecodeError(fmt::format("queue frame has {} trailing bytes", r.remaining()));
  return f;
}

}  // namespace mqnode::broker::wire
