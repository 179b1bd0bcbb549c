// Reader/Writer for the AMQP 0-9-1 wire types and RabbitMQ's field-table value tags.
// Every length read from the wire is checked against the bytes that remain before anything
// is allocated, and tables/arrays nest at most Reader::kMaxNesting deep, so hostile input
// costs at most a small constant factor of its own size and never overflows the stack.
#include "amqp/codec.hpp"

#include <bit>
#include <cstring>
#include <limits>
#include <type_traits>

namespace mqnode::amqp {

namespace {

template <typename T>
void put_be(std::vector<uint8_t>& out, T v) {
  uint8_t b[sizeof(T)];
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    b[i] = static_cast<uint8_t>(v >> (8 * (sizeof(T) - 1 - i)));
  }
  out.insert(out.end(), b, b + sizeof(T));
}

template <typename T>
T get_be(const uint8_t* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v = static_cast<T>((v << 8) | p[i]);
  return v;
}

[[noreturn]] void throw_bad_tag(uint8_t tag, std::size_t at) {
  static constexpr char kHex[] = "0123456789abcdef";
  throw DecodeError(std::string("unknown field value type tag 0x") + kHex[tag >> 4] +
                    kHex[tag & 15] + " at offset " + std::to_string(at));
}

}  // namespace

void Reader::need(std::size_t n) const {
  if (n > remaining()) {
    throw DecodeError("truncated: need " + std::to_string(n) + " bytes at offset " +
                      std::to_string(pos_) + ", have " + std::to_string(remaining()));
  }
}

uint8_t Reader::u8() {
  need(1);
  return in_[pos_++];
}

uint16_t Reader::u16() {
  need(2);
  const uint16_t v = get_be<uint16_t>(in_.data() + pos_);
  pos_ += 2;
  return v;
}

uint32_t Reader::u32() {
  need(4);
  const uint32_t v = get_be<uint32_t>(in_.data() + pos_);
  pos_ += 4;
  return v;
}

uint64_t Reader::u64() {
  need(8);
  const uint64_t v = get_be<uint64_t>(in_.data() + pos_);
  pos_ += 8;
  return v;
}

std::span<const uint8_t> Reader::bytes(std::size_t n) {
  need(n);
  const auto s = in_.subspan(pos_, n);
  pos_ += n;
  return s;
}

std::string Reader::shortstr() {
  const uint8_t n = u8();
  const auto b = bytes(n);
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string Reader::longstr() {
  const uint32_t n = u32();
  const auto b = bytes(n);  // checked before the string allocates
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

Reader Reader::nested(std::size_t n) {
  if (depth_ >= kMaxNesting) {
    throw DecodeError("field table/array nesting deeper than " + std::to_string(kMaxNesting));
  }
  Reader sub(bytes(n));
  sub.depth_ = depth_ + 1;
  return sub;
}

FieldTable Reader::table() {
  const uint32_t n = u32();
  Reader sub = nested(n);
  FieldTable t;
  while (sub.remaining() > 0) {
    std::string key = sub.shortstr();
    FieldValue v = sub.field_value();
    t.entries.emplace_back(std::move(key), std::move(v));
  }
  return t;
}

FieldValue Reader::field_value() {
  const uint8_t tag = u8();
  switch (tag) {
    case 't': return FieldValue(u8() != 0);
    case 'b': return FieldValue(static_cast<int8_t>(u8()));
    case 'B': return FieldValue(u8());
    case 's': return FieldValue(static_cast<int16_t>(u16()));
    case 'u': return FieldValue(u16());
    case 'I': return FieldValue(static_cast<int32_t>(u32()));
    case 'i': return FieldValue(u32());
    case 'l': return FieldValue(static_cast<int64_t>(u64()));
    case 'f': return FieldValue(std::bit_cast<float>(u32()));
    case 'd': return FieldValue(std::bit_cast<double>(u64()));
    case 'D': {
      Decimal d;
      d.scale = u8();
      d.value = u32();
      return FieldValue(d);
    }
    case 'S': return FieldValue(longstr());
    case 'x': return FieldValue(ByteArray{longstr()});
    case 'A': {
      const uint32_t n = u32();
      Reader sub = nested(n);
      FieldArray a;
      while (sub.remaining() > 0) a.push_back(sub.field_value());
      return FieldValue(std::move(a));
    }
    case 'T': return FieldValue(Timestamp{u64()});
    case 'F': return FieldValue(table());
    case 'V': return FieldValue(Void{});
    default:
      throw_bad_tag(tag, pos_ - 1);
  }
}

void Reader::skip_table() {
  const uint32_t n = u32();
  Reader sub = nested(n);
  while (sub.remaining() > 0) {
    sub.bytes(sub.u8());  // key
    sub.skip_field_value();
  }
}

void Reader::skip_field_value() {
  const uint8_t tag = u8();
  switch (tag) {
    case 't': case 'b': case 'B': bytes(1); return;
    case 's': case 'u': bytes(2); return;
    case 'I': case 'i': case 'f': bytes(4); return;
    case 'l': case 'd': case 'T': bytes(8); return;
    case 'D': bytes(5); return;
    case 'S': case 'x': bytes(u32()); return;
    case 'A': {
      const uint32_t n = u32();
      Reader sub = nested(n);
      while (sub.remaining() > 0) sub.skip_field_value();
      return;
    }
    case 'F': skip_table(); return;
    case 'V': return;
    default:
      throw_bad_tag(tag, pos_ - 1);
  }
}

void Writer::u8(uint8_t v) { out_.push_back(v); }
void Writer::u16(uint16_t v) { put_be(out_, v); }
void Writer::u32(uint32_t v) { put_be(out_, v); }
void Writer::u64(uint64_t v) { put_be(out_, v); }

void Writer::bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }

void Writer::bytes(std::string_view b) {
  const auto* p = reinterpret_cast<const uint8_t*>(b.data());
  out_.insert(out_.end(), p, p + b.size());
}

void Writer::shortstr(std::string_view s) {
  if (s.size() > 255) {
    throw EncodeError("shortstr longer than 255 bytes (" + std::to_string(s.size()) + ")");
  }
  u8(static_cast<uint8_t>(s.size()));
  bytes(s);
}

void Writer::longstr(std::string_view s) {
  if (s.size() > std::numeric_limits<uint32_t>::max()) {
    throw EncodeError("longstr longer than 4 GiB");
  }
  u32(static_cast<uint32_t>(s.size()));
  bytes(s);
}

void Writer::patch_u32(std::size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) out_[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

void Writer::patch_length(std::size_t at) {
  const std::size_t n = out_.size() - at - 4;
  if (n > std::numeric_limits<uint32_t>::max()) throw EncodeError("field table larger than 4 GiB");
  patch_u32(at, static_cast<uint32_t>(n));
}

void Writer::table(const FieldTable& t) {
  const std::size_t at = size();
  u32(0);
  for (const auto& [key, value] : t.entries) {
    shortstr(key);
    field_value(value);
  }
  patch_length(at);
}

void Writer::field_value(const FieldValue& fv) {
  u8(static_cast<uint8_t>(fv.tag()));
  std::visit(
      [this](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          u8(x ? 1 : 0);
        } else if constexpr (std::is_same_v<T, int8_t> || std::is_same_v<T, uint8_t>) {
          u8(static_cast<uint8_t>(x));
        } else if constexpr (std::is_same_v<T, int16_t> || std::is_same_v<T, uint16_t>) {
          u16(static_cast<uint16_t>(x));
        } else if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, uint32_t>) {
          u32(static_cast<uint32_t>(x));
        } else if constexpr (std::is_same_v<T, int64_t>) {
          u64(static_cast<uint64_t>(x));
        } else if constexpr (std::is_same_v<T, float>) {
          u32(std::bit_cast<uint32_t>(x));
        } else if constexpr (std::is_same_v<T, double>) {
          u64(std::bit_cast<uint64_t>(x));
        } else if constexpr (std::is_same_v<T, Decimal>) {
          u8(x.scale);
          u32(x.value);
        } else if constexpr (std::is_same_v<T, std::string>) {
          longstr(x);
        } else if constexpr (std::is_same_v<T, ByteArray>) {
          longstr(x.bytes);
        } else if constexpr (std::is_same_v<T, FieldArray>) {
          const std::size_t at = size();
          u32(0);
          for (const auto& e : x) field_value(e);
          patch_length(at);
        } else if constexpr (std::is_same_v<T, Timestamp>) {
          u64(x.seconds);
        } else if constexpr (std::is_same_v<T, FieldTable>) {
          table(x);
        } else {
          static_assert(std::is_same_v<T, Void>);
        }
      },
      fv.v);
}

}  // namespace mqnode::amqp
