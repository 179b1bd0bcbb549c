#include "cluster/frame.hpp"

#include <algorithm>

namespace mqnode::cluster {

std::size_t FrameReader::wanted() const {
  if (too_large_) return 0;
  if (complete_) return kFrameHeaderSize;
  if (header_have_ < kFrameHeaderSize) return kFrameHeaderSize - header_have_;
  return payload_size_ - payload_.size();
}

FrameReader::Status FrameReader::feed(std::span<const uint8_t> in, std::size_t& consumed) {
  consumed = 0;
  if (too_large_) return Status::TooLarge;
  if (complete_) {
    complete_ = false;
    header_have_ = 0;
    payload_.clear();
  }
  if (header_have_ < kFrameHeaderSize) {
    const std::size_t n = std::min(kFrameHeaderSize - header_have_, in.size());
    std::copy_n(in.begin(), n, header_ + header_have_);
    header_have_ += n;
    consumed += n;
    if (header_have_ < kFrameHeaderSize) return Status::NeedMore;
    payload_size_ = std::size_t{header_[0]} << 24 | std::size_t{header_[1]} << 16 | std::size_t{header_[2]} << 8 |
                    std::size_t{header_[3]};
    if (payload_size_ > max_payload_) {
      too_large_ = true;
      return Status::TooLarge;
    }
    payload_.reserve(payload_size_);
  }
  const auto rest = in.subspan(consumed);
  const std::size_t n = std::min(payload_size_ - payload_.size(), rest.size());
  payload_.insert(payload_.end(), rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(n));
  consumed += n;
  if (payload_.size() < payload_size_) return Status::NeedMore;
  complete_ = true;
  return Status::Frame;
}

void append_frame(std::vector<uint8_t>& out, std::span<const uint8_t> payload) {
  const auto n = static_cast<uint32_t>(payload.size());
  out.insert(out.end(), {static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8),
                         static_cast<uint8_t>(n)});
  out.insert(out.end(), payload.begin(), payload.end());
}

}  // namespace mqnode::cluster
