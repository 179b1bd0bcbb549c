#include "broker/resource_alarm.hpp"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdlib>

namespace mqnode::broker {

std::string AlarmState::reason() const {
  if (memory && disk) return "low on memory and disk";
  if (memory) return "low on memory";
  if (disk) return "low on disk";
  return "";
}

uint64_t memory_limit(const ResourceLimits& l, uint64_t total_memory) {
  if (l.memory_absolute) return l.memory_absolute;
  return static_cast<uint64_t>(l.memory_relative * static_cast<double>(total_memory));
}

AlarmState evaluate_alarms(const ResourceLimits& l, const ResourceReading& r) {
  AlarmState a;
  uint64_t mem_limit = memory_limit(l, r.total_memory);
  a.memory = mem_limit > 0 && r.rss > mem_limit;
  // A reading of 0 free bytes with a failed statvfs would block everyone; only a real
  // reading counts (read_resources leaves disk_free at UINT64_MAX when it cannot read).
  a.disk = r.disk_free < l.disk_free_limit;
  return a;
}

namespace {

// Resident pages from /proc/self/statm through one descriptor kept open: the housekeeping
// tick reads it ten times a second, and opening the file each time was a fifth of an idle
// node's CPU (perf). A read at offset 0 makes the kernel write the line afresh.
uint64_t resident_pages() {
  static const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char line[128];
  const ssize_t n = ::pread(fd, line, sizeof line - 1, 0);
  if (n <= 0) return 0;
  line[n] = '\0';
  char* after_size = nullptr;
  std::strtoull(line, &after_size, 10);  // the first field is the total size
  return std::strtoull(after_size, nullptr, 10);
}

}  // namespace

ResourceReading read_resources(const std::string& data_dir) {
  ResourceReading r;
  r.disk_free = UINT64_MAX;
  long page = sysconf(_SC_PAGESIZE);
  r.rss = resident_pages() * static_cast<uint64_t>(page);
  long pages = sysconf(_SC_PHYS_PAGES);
  if (pages > 0) r.total_memory = static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
  struct statvfs vfs {};
  if (statvfs(data_dir.c_str(), &vfs) == 0) r.disk_free = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  return r;
}

}  // namespace mqnode::broker
