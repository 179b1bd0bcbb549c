#include <sys/stat.h>

#include <fstream>
#include <string>

#include <doctest/doctest.h>

#include "cluster/cookie.hpp"
#include "support/temp_store.hpp"

using mqnode::cluster::Cookie;
using mqnode::cluster::CookieError;
using mqnode::test::TempDir;

namespace {

void write_file(const std::filesystem::path& p, const std::string& content, mode_t mode) {
  std::ofstream(p) << content;
  REQUIRE(::chmod(p.c_str(), mode) == 0);
}

std::string error_of(const std::filesystem::path& p) {
  try {
    Cookie::load_or_create(p);
  } catch (const CookieError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("cookie: a first start creates 20 uppercase letters, mode 0400; the next start reads them") {
  TempDir dir;
  const auto path = Cookie::default_path(dir.path);
  CHECK(path == dir.path / ".cookie");
  Cookie first = Cookie::load_or_create(path);
  CHECK(first.path() == path);
  CHECK(first.secret().size() == 20);
  for (char c : first.secret()) CHECK((c >= 'A' && c <= 'Z'));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0400);
  CHECK(Cookie::load_or_create(path).secret() == first.secret());

  TempDir other;
  CHECK(Cookie::load_or_create(Cookie::default_path(other.path)).secret() != first.secret());
}

TEST_CASE("cookie: an operator's file is read as it is, without surrounding whitespace") {
  TempDir dir;
  write_file(dir.path / "c", "SECRETCOOKIE\n", 0400);
  CHECK(Cookie::load_or_create(dir.path / "c").secret() == "SECRETCOOKIE");
  write_file(dir.path / "d", "  two words\n", 0600);
  CHECK(Cookie::load_or_create(dir.path / "d").secret() == "two words");
}

TEST_CASE("cookie: a file that group or others can access is refused, saying how to fix it") {
  TempDir dir;
  const auto path = dir.path / "c";
  for (mode_t mode : {0644, 0440, 0404, 0420, 0402, 0410}) {
    CAPTURE(mode);
    write_file(path, "SECRET", mode);
    const auto err = error_of(path);
    CHECK(err.find(path.string()) != std::string::npos);
    CHECK(err.find("chmod 400 " + path.string()) != std::string::npos);
  }
}

TEST_CASE("cookie: empty, a directory, or a missing directory are refused with the file's name") {
  TempDir dir;
  write_file(dir.path / "empty", "", 0400);
  CHECK(error_of(dir.path / "empty").find("is empty") != std::string::npos);
  write_file(dir.path / "blank", " \n", 0400);
  CHECK(error_of(dir.path / "blank").find("is empty") != std::string::npos);
  std::filesystem::create_directory(dir.path / "sub");
  ::chmod((dir.path / "sub").c_str(), 0700);
  CHECK(error_of(dir.path / "sub").find("not a regular file") != std::string::npos);
  const auto missing = dir.path / "nope" / ".cookie";
  CHECK(error_of(missing).find(missing.string() + ": cannot create it") != std::string::npos);
}
