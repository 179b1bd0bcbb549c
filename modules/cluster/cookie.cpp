#include "cluster/cookie.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <openssl/rand.h>

namespace mqnode::cluster {

namespace {

constexpr std::size_t kGeneratedLength = 20;
constexpr std::size_t kMaxCookieFile = 4096;  // a cookie is a line, not a document

[[noreturn]] void fail_errno(const std::filesystem::path& path, std::string_view what) {
  throw CookieError(fmt::format("cookie file {}: {}: {}", path.string(), what, std::strerror(errno)));
}

// 20 letters A-Z from OpenSSL's CSPRNG; bytes >= 234 are redrawn so each letter is equally
// likely (234 = 9 * 26).
std::string random_letters() {
  std::string out;
  while (out.size() < kGeneratedLength) {
    unsigned char buf[32];
    if (RAND_bytes(buf, sizeof buf) != 1) throw CookieError("cannot generate a cookie: OpenSSL RAND_bytes failed");
    for (unsigned char b : buf) {
      if (b < 234 && out.size() < kGeneratedLength) out.push_back(static_cast<char>('A' + b % 26));
    }
  }
  return out;
}

// Writes a new cookie unless a file is there already. O_EXCL: if two processes race on a
// first start, one creates and the other reads.
void create_if_missing(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
  if (fd < 0) {
    if (errno == EEXIST) return;
    fail_errno(path, "cannot create it");
  }
  const std::string secret = random_letters();
  bool ok = ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    errno = saved;
    fail_errno(path, "cannot write it");
  }
}

std::string read_checked(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_errno(path, "cannot open it");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    fail_errno(path, "cannot stat it");
  }
  std::string content;
  std::string problem;
  if (!S_ISREG(st.st_mode)) {
    problem = "is not a regular file";
  } else if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    problem = fmt::format("is accessible by group or others (mode {:04o}); the cookie is the cluster's password: run "
                          "`chmod 400 {}`",
                          st.st_mode & 07777, path.string());
  } else if (st.st_size > static_cast<off_t>(kMaxCookieFile)) {
    problem = fmt::format("is {} bytes, more than a cookie ({} at most)", st.st_size, kMaxCookieFile);
  } else {
    content.resize(static_cast<std::size_t>(st.st_size));
    ssize_t n = ::read(fd, content.data(), content.size());
    if (n < 0) {
      int saved = errno;
      ::close(fd);
      errno = saved;
      fail_errno(path, "cannot read it");
    }
    content.resize(static_cast<std::size_t>(n));
  }
  ::close(fd);
  if (!problem.empty()) throw CookieError(fmt::format("cookie file {} {}", path.string(), problem));
  return content;
}

std::string trimmed(const std::string& s) {
  const char* ws = " \t\r\n";
  auto b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

}  // namespace

std::filesystem::path Cookie::default_path(const std::filesystem::path& data_dir) { return data_dir / ".cookie"; }

Cookie Cookie::load_or_create(const std::filesystem::path& path) {
  create_if_missing(path);
  std::string secret = trimmed(read_checked(path));
  if (secret.empty()) {
    throw CookieError(fmt::format(
        "cookie file {} is empty: copy the cookie file of an existing node of the cluster there (mode 0400), or "
        "remove it to have a new cookie generated",
        path.string()));
  }
  return Cookie(path, std::move(secret));
}

}  // namespace mqnode::cluster
