// libFuzzer target: the bytes a client sends on one HTTP connection (lb stats page,
// management API, control socket). Layout, as gen_corpus.py writes the seeds:
//   [opts] [chunk lengths: opts & 7 bytes] [the byte stream]
//   opts bits 3-5: header limit 64 << n bytes; bits 6-7: body limit 16 << 4n bytes
// The stream goes through RequestParser twice, the way Server's connection loop drives it:
// in one piece, then in chunks of the lengths given (cycled, each length + 1). The requests
// and the final status must be the same whatever the split. Each request then goes through
// the helpers its handlers use on untrusted bytes (params / parse_form, url_decode,
// basic_credentials / base64_decode), and the whole stream through parse_response, which
// reads what our own servers answer to `mqnode ctl`.
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/http.hpp"

using namespace mqnode::core::http;

namespace {

#define FUZZ_CHECK(cond) \
  do {                   \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// What a connection made of the stream: the requests in order, and how it ended.
struct Outcome {
  struct Seen {
    std::string method, target, path, query, body;
    std::map<std::string, std::string> headers;
    bool keep_alive;
    bool operator==(const Seen&) const = default;
  };
  std::vector<Seen> requests;
  std::vector<Request> full;  // the same requests whole, for the helpers
  RequestParser::Status end = RequestParser::Status::NeedMore;
  std::string error;
};

// Server::Conn::run's loop without the socket: unconsumed bytes stay buffered, a request
// without keep-alive or an error ends the connection, running out of chunks ends it too.
Outcome run(std::string_view stream, std::span<const uint8_t> lengths, std::size_t max_header, std::size_t max_body) {
  Outcome out;
  RequestParser parser(max_header, max_body);
  std::string buf;
  std::size_t start = 0, sent = 0, next = 0;
  for (;;) {
    std::size_t used = 0;
    const auto status = parser.feed(std::string_view(buf).substr(start), used);
    FUZZ_CHECK(used <= buf.size() - start);
    start += used;
    if (status == RequestParser::Status::NeedMore) {
      if (start == buf.size()) {
        buf.clear();
        start = 0;
      }
      if (sent == stream.size()) break;
      const std::size_t n = lengths.empty() ? stream.size() : std::size_t{lengths[next++ % lengths.size()]} + 1;
      const auto piece = stream.substr(sent, n);
      buf.append(piece);
      sent += piece.size();
      continue;
    }
    out.end = status;
    if (status == RequestParser::Status::Error) {
      FUZZ_CHECK(!parser.error().empty());
      out.error = parser.error();
      break;
    }
    Request r = parser.take();
    out.requests.push_back({r.method, r.target, r.path, r.query, r.body, r.headers, parser.keep_alive()});
    out.full.push_back(std::move(r));
    if (!parser.keep_alive()) break;
  }
  return out;
}

void check_url_decode(std::string_view s) {
  for (bool plus : {false, true}) {
    FUZZ_CHECK(url_decode(s, plus).size() <= s.size());
    FUZZ_CHECK(url_decode(url_encode(s), plus) == s);  // url_encode escapes '+' and '%'
  }
}

void check_request(const Request& r) {
  for (const auto& [k, v] : r.params()) FUZZ_CHECK(k.size() <= r.query.size() + r.body.size());
  check_url_decode(r.path);
  check_url_decode(r.body);
  const auto creds = basic_credentials(r);
  if (creds) {
    FUZZ_CHECK(check_basic_auth(r, creds->first, creds->second));
    FUZZ_CHECK(!check_basic_auth(r, creds->first, creds->second + "x"));
  }
  std::string_view b64 = r.body;
  const auto decoded = base64_decode(b64);
  if (decoded) {
    while (!b64.empty() && b64.back() == '=') b64.remove_suffix(1);
    FUZZ_CHECK(decoded->size() == b64.size() * 6 / 8);  // every character carries 6 bits
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const uint8_t opts = data[0];
  const std::size_t cuts = opts & 7u;
  if (size < 1 + cuts) return 0;
  const std::span<const uint8_t> lengths(data + 1, cuts);
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1 + cuts, size - 1 - cuts);
  const std::size_t max_header = std::size_t{64} << ((opts >> 3) & 7u);
  const std::size_t max_body = std::size_t{16} << (4 * (opts >> 6));

  const Outcome whole = run(stream, {}, max_header, max_body);
  const Outcome split = run(stream, lengths, max_header, max_body);
  FUZZ_CHECK(whole.requests == split.requests);
  FUZZ_CHECK(whole.end == split.end && whole.error == split.error);

  for (const Request& r : whole.full) check_request(r);
  // Any three digits are a status-code (RFC 9110 §15), "000" included: only the sanitizers check this one.
  (void)parse_response(stream);
  return 0;
}
