// RabbitMQ's resource alarms: when the node's memory use crosses the high watermark or the
// free disk space under the data dir falls below the limit, publishing connections are
// blocked (connection.blocked, then not read from) until the alarm clears. Consumers keep
// draining. The decision is pure; the readings come from /proc and statvfs.
#pragma once

#include <cstdint>
#include <string>

namespace mqnode::broker {

struct ResourceLimits {
  double memory_relative = 0.4;  // vm_memory_high_watermark.relative
  uint64_t memory_absolute = 0;  // vm_memory_high_watermark.absolute, bytes; wins when set
  uint64_t disk_free_limit = 50'000'000;  // disk_free_limit.absolute, bytes
};

struct ResourceReading {
  uint64_t rss = 0;          // resident bytes of this process
  uint64_t total_memory = 0; // bytes of RAM on the host
  uint64_t disk_free = 0;    // bytes available to us under the data dir
};

struct AlarmState {
  bool memory = false;
  bool disk = false;
  bool any() const { return memory || disk; }
  bool operator==(const AlarmState&) const = default;
  // The reason connection.blocked carries (RabbitMQ's words).
  std::string reason() const;
};

uint64_t memory_limit(const ResourceLimits& l, uint64_t total_memory);
AlarmState evaluate_alarms(const ResourceLimits& l, const ResourceReading& r);
// Reads RSS and RAM from /proc, free space from statvfs(<data_dir>); fields it cannot read
// stay 0, and disk_free stays UINT64_MAX, so a failed reading never raises an alarm.
ResourceReading read_resources(const std::string& data_dir);

}  // namespace mqnode::broker
