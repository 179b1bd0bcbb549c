#include <doctest/doctest.h>

#include "core/http.hpp"

using namespace mqnode::core::http;

namespace {
const std::string kGet =
    "GET /haproxy;csv?x=1&name=a%20b HTTP/1.1\r\nHost: h\r\nAuthorization: Basic YWRtaW46c2VjcmV0\r\n"
    "X-Twice: a\r\nx-twice: b\r\n\r\n";
}

TEST_CASE("request parser: every split point of a request gives the same request") {
  for (std::size_t split = 0; split <= kGet.size(); ++split) {
    RequestParser p;
    std::size_t used = 0;
    auto st = p.feed(std::string_view(kGet).substr(0, split), used);
    CHECK(used == split);
    if (split < kGet.size()) {
      REQUIRE(st == RequestParser::Status::NeedMore);
      st = p.feed(std::string_view(kGet).substr(split), used);
    }
    REQUIRE(st == RequestParser::Status::Complete);
    auto r = p.take();
    CHECK(r.method == "GET");
    CHECK(r.path == "/haproxy;csv");
    CHECK(r.query == "x=1&name=a%20b");
    CHECK(r.header("host") == "h");
    CHECK(r.header("x-twice") == "a,b");
    CHECK(r.params().at("name") == "a b");
    CHECK(p.keep_alive());
  }
}

TEST_CASE("request parser: a refused request gets the same error however its bytes arrive") {
  // A header section over the limit that also holds a bad character past the limit (found
  // by fuzz_http): too large in one piece as in small pieces.
  const std::string req = "GET / HTTP/1.1\r\n" + std::string(80, 'X') + "@: v\r\n\r\n";
  for (std::size_t chunk : {req.size(), std::size_t{32}, std::size_t{7}, std::size_t{1}}) {
    RequestParser p(64, 16);
    auto st = RequestParser::Status::NeedMore;
    for (std::size_t at = 0; at < req.size() && st == RequestParser::Status::NeedMore;) {
      std::size_t used = 0;
      st = p.feed(std::string_view(req).substr(at, chunk), used);
      at += used;
    }
    CHECK(st == RequestParser::Status::Error);
    CHECK(p.error() == "request header too large");
  }
  // The same bad character inside the limit is a syntax error, in any pieces.
  const std::string small = "GET / HTTP/1.1\r\nX@: v\r\n\r\n";
  for (std::size_t chunk : {small.size(), std::size_t{1}}) {
    RequestParser p(64, 16);
    auto st = RequestParser::Status::NeedMore;
    for (std::size_t at = 0; at < small.size() && st == RequestParser::Status::NeedMore;) {
      std::size_t used = 0;
      st = p.feed(std::string_view(small).substr(at, chunk), used);
      at += used;
    }
    CHECK(st == RequestParser::Status::Error);
    CHECK(p.error() != "request header too large");
  }
}

TEST_CASE("request parser: pipelined requests come out one at a time; bodies; errors") {
  SUBCASE("pipelined") {
    std::string two = kGet + "POST /r HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                             "Content-Length: 10\r\nConnection: close\r\n\r\ncmd=a+b%2F";
    RequestParser p;
    std::size_t used = 0;
    REQUIRE(p.feed(two, used) == RequestParser::Status::Complete);
    CHECK(p.take().path == "/haproxy;csv");
    std::size_t used2 = 0;
    REQUIRE(p.feed(std::string_view(two).substr(used), used2) == RequestParser::Status::Complete);
    CHECK(used + used2 <= two.size());
    auto r = p.take();
    CHECK(r.method == "POST");
    CHECK(r.body == "cmd=a+b%2F");
    CHECK(r.params().at("cmd") == "a b/");
    CHECK_FALSE(p.keep_alive());
  }
  SUBCASE("garbage is an error") {
    RequestParser p;
    std::size_t used = 0;
    CHECK(p.feed("HELLO\r\n\r\n", used) == RequestParser::Status::Error);
    CHECK_FALSE(p.error().empty());
  }
  SUBCASE("oversized headers and bodies are refused") {
    RequestParser p(64, 16);
    std::size_t used = 0;
    CHECK(p.feed("GET /" + std::string(100, 'a') + " HTTP/1.1\r\n\r\n", used) == RequestParser::Status::Error);
    CHECK(p.error() == "request header too large");
    RequestParser q(1024, 16);
    CHECK(q.feed("POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n", used) == RequestParser::Status::Error);
    CHECK(q.error() == "request body too large");
  }
}

TEST_CASE("basic auth, base64 and decoding helpers") {
  Request r;
  r.headers["authorization"] = "Basic YWRtaW46c2VjcmV0";  // admin:secret
  CHECK(check_basic_auth(r, "admin", "secret"));
  CHECK_FALSE(check_basic_auth(r, "admin", "secreT"));
  CHECK_FALSE(check_basic_auth(r, "admin", "secret2"));
  CHECK_FALSE(check_basic_auth(r, "admi", "nsecret"));
  r.headers["authorization"] = "basic YWRtaW46c2VjcmV0";
  CHECK(check_basic_auth(r, "admin", "secret"));
  r.headers["authorization"] = "Bearer x";
  CHECK_FALSE(check_basic_auth(r, "admin", "secret"));
  r.headers.clear();
  CHECK_FALSE(check_basic_auth(r, "", ""));
  CHECK(base64_decode("YQ==") == std::optional<std::string>("a"));
  CHECK(base64_decode("YWI=") == std::optional<std::string>("ab"));
  CHECK(base64_decode("YWJj") == std::optional<std::string>("abc"));
  CHECK_FALSE(base64_decode("Y").has_value());
  CHECK_FALSE(base64_decode("Y!==").has_value());
  CHECK(url_decode("a%2Fb+c%zz%4") == "a/b c%zz%4");
  CHECK(url_decode("a+b", false) == "a+b");
  auto f = parse_form("a=1&&b&c=x%3Dy&a=2");
  CHECK(f.at("a") == "2");
  CHECK(f.at("b") == "");
  CHECK(f.at("c") == "x=y");
  CHECK(html_escape("<a href=\"x\">&'") == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

TEST_CASE("basic credentials, url_encode and response parsing (the ctl side of the control socket)") {
  Request r;
  r.headers["authorization"] = "Basic YWRtaW46czpl";  // admin:s:e — the password may hold ':'
  auto creds = basic_credentials(r);
  REQUIRE(creds.has_value());
  CHECK(creds->first == "admin");
  CHECK(creds->second == "s:e");
  r.headers["authorization"] = "Basic YWRtaW4=";  // "admin": no colon
  CHECK_FALSE(basic_credentials(r).has_value());

  CHECK(url_encode("/") == "%2F");
  CHECK(url_encode("a b/ü~-._") == "a%20b%2F%C3%BC~-._");
  CHECK(url_decode(url_encode("x/y%z+w"), false) == "x/y%z+w");

  auto resp = parse_response(serialize(Response::json("{\"a\":1}"), false));
  REQUIRE(resp.has_value());
  CHECK(resp->status == 200);
  CHECK(resp->content_type == "application/json");
  CHECK(resp->body == "{\"a\":1}");
  auto created = Response::text(201, "");
  resp = parse_response(serialize(created, false));
  REQUIRE(resp.has_value());
  CHECK(resp->status == 201);
  CHECK(resp->body.empty());
  // A reply cut short is not a reply.
  auto wire = serialize(Response::text(404, "not here"), false);
  CHECK_FALSE(parse_response(wire.substr(0, wire.size() - 2)).has_value());
  CHECK_FALSE(parse_response("garbage\r\n\r\n").has_value());
}

TEST_CASE("router: exact paths, longest prefix, 404 and 405; serialization") {
  Router router;
  router.add("GET", "/a", [](const Request&) { return Response::text(200, "a"); });
  router.add_prefix("GET", "/p", [](const Request&) { return Response::text(200, "p"); });
  router.add_prefix("GET", "/p/q", [](const Request&) { return Response::text(200, "pq"); });
  router.add("POST", "/post", [](const Request& r) { return Response::text(200, r.body); });
  auto req = [](std::string m, std::string p) {
    Request r;
    r.method = std::move(m);
    r.path = std::move(p);
    return r;
  };
  CHECK(router.dispatch(req("GET", "/a")).body == "a");
  CHECK(router.dispatch(req("HEAD", "/a")).body == "a");
  CHECK(router.dispatch(req("GET", "/p/x")).body == "p");
  CHECK(router.dispatch(req("GET", "/p/q/x")).body == "pq");
  CHECK(router.dispatch(req("GET", "/b")).status == 404);
  CHECK(router.dispatch(req("POST", "/a")).status == 405);
  CHECK(router.dispatch(req("GET", "/post")).body == "p");  // prefix "/p" matches

  auto r = Response::unauthorized("HAProxy Statistics");
  auto wire = serialize(r, false);
  CHECK(wire.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
  CHECK(wire.find("WWW-Authenticate: Basic realm=\"HAProxy Statistics\"\r\n") != std::string::npos);
  CHECK(wire.find("Content-Length: 17\r\n") != std::string::npos);
  CHECK(wire.find("Connection: close\r\n\r\n401 Unauthorized\n") != std::string::npos);
  auto head = serialize(Response::text(200, "hello"), true, true);
  CHECK(head.find("Content-Length: 5\r\n") != std::string::npos);
  CHECK(head.ends_with("\r\n\r\n"));
}
