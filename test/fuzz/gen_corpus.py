#!/usr/bin/python3
"""Write the seed corpora of the fuzz targets (test/fuzz/corpus/<target>/*.bin).

frame: plausible connection byte streams: optional protocol header, then method, content
  header, body and heartbeat frames, with field tables using every type tag. Encodings
  written here by hand from the spec, independently of the C++ codec.
vrrp: keepalived's captured adverts, read from test/unit/vrrp/packet_test.cpp (one copy of
  the bytes), each behind the instance configuration that accepts it (fuzz_vrrp.cpp's layout).
http: requests a browser, curl or mqnode ctl sends, behind fuzz_http.cpp's options byte.
Standard library only.
"""

import os
import re
import socket
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
PACKET_TEST = os.path.join(HERE, "..", "unit", "vrrp", "packet_test.cpp")
HEADER = b"AMQP\x00\x00\x09\x01"


def u8(v): return struct.pack(">B", v)
def u16(v): return struct.pack(">H", v)
def u32(v): return struct.pack(">I", v)
def u64(v): return struct.pack(">Q", v)
def sstr(s): s = s.encode(); return u8(len(s)) + s
def lstr(s): s = s if isinstance(s, bytes) else s.encode(); return u32(len(s)) + s


def table(entries):
    body = b"".join(sstr(k) + v for k, v in entries)
    return u32(len(body)) + body


def array(values):
    body = b"".join(values)
    return u32(len(body)) + body


def every_type():
    inner = table([("k", b"V"), ("n", b"I" + u32(7))])
    arr = array([b"t\x01", b"b\xfe", b"S" + lstr("x"), b"F" + inner, b"A" + array([b"V"])])
    return table([
        ("t", b"t\x01"), ("b", b"b\xfe"), ("B", b"B\xfe"), ("s", b"s" + u16(0xfffe)),
        ("u", b"u" + u16(2)), ("I", b"I" + u32(0xfffffffe)), ("i", b"i" + u32(3)),
        ("l", b"l" + u64(2**63)), ("f", b"f" + struct.pack(">f", 1.5)),
        ("d", b"d" + struct.pack(">d", -2.25)), ("D", b"D\x02" + u32(1234)),
        ("S", b"S" + lstr("hello")), ("x", b"x" + lstr(b"\x00\xff")), ("A", b"A" + arr),
        ("T", b"T" + u64(1700000000)), ("F", b"F" + inner), ("V", b"V"),
    ])


def frame(typ, channel, payload):
    return u8(typ) + u16(channel) + u32(len(payload)) + payload + b"\xce"


def method(channel, cls, mid, args=b""):
    return frame(1, channel, u16(cls) + u16(mid) + args)


def content(channel, body, props=b"\x00\x00", split=None):
    out = frame(2, channel, u16(60) + u16(0) + u64(len(body)) + props)
    split = split or max(len(body), 1)
    for i in range(0, len(body), split):
        out += frame(3, channel, body[i:i + split])
    return out


def all_properties():
    flags = 0xfffc
    return (u16(flags) + sstr("application/json") + sstr("gzip") + every_type() + u8(2) + u8(5)
            + sstr("corr") + sstr("amq.rabbitmq.reply-to") + sstr("60000") + sstr("mid")
            + u64(1700000000) + sstr("type") + sstr("guest") + sstr("app") + sstr("cluster"))


HEARTBEAT = frame(8, 0, b"")

FRAME_SEEDS = {
    "client_handshake": HEADER
    + method(0, 10, 11, every_type() + sstr("PLAIN") + lstr("\x00guest\x00guest") + sstr("en_US"))
    + method(0, 10, 31, u16(2047) + u32(131072) + u16(60))
    + method(0, 10, 40, sstr("/") + sstr("") + u8(0))
    + method(1, 20, 10, sstr(""))
    + method(1, 85, 10, u8(0)),
    "publish": method(1, 60, 40, u16(0) + sstr("amq.direct") + sstr("rk") + u8(1))
    + content(1, b"hello world", all_properties(), split=4)
    + method(1, 60, 40, u16(0) + sstr("") + sstr("q") + u8(0))
    + content(1, b"", u16(0x9000) + sstr("text/plain") + u8(2))
    + HEARTBEAT,
    "declare": method(1, 40, 10, u16(0) + sstr("ex") + sstr("headers") + u8(0x02) + every_type())
    + method(1, 50, 10, u16(0) + sstr("q1") + u8(0x12) + table([("x-max-length", b"I" + u32(10))]))
    + method(1, 50, 20, u16(0) + sstr("q1") + sstr("ex") + sstr("rk") + u8(0) + every_type())
    + method(1, 60, 10, u32(0) + u16(100) + u8(0))
    + method(1, 60, 20, u16(0) + sstr("q1") + sstr("ctag") + u8(0x02) + table([]))
    + method(1, 40, 30, u16(0) + sstr("d") + sstr("s") + sstr("#") + u8(0) + table([])),
    "server": method(0, 10, 10, u8(0) + u8(9) + every_type() + lstr("PLAIN AMQPLAIN") + lstr("en_US"))
    + method(0, 10, 30, u16(2047) + u32(131072) + u16(60))
    + method(1, 60, 60, sstr("ctag") + u64(1) + u8(1) + sstr("") + sstr("q"))
    + content(1, b"x" * 300, u16(0x1000) + u8(1))
    + method(1, 60, 80, u64(7) + u8(1))
    + method(1, 60, 120, u64(8) + u8(3))
    + method(1, 20, 40, u16(404) + sstr("NOT_FOUND - no queue 'q'") + u16(50) + u16(10))
    + method(0, 10, 50, u16(320) + sstr("CONNECTION_FORCED") + u16(0) + u16(0)),
    "body_table": frame(3, 1, every_type()) + frame(3, 1, b"A" + array([b"V", b"t\x00"])),
    "heartbeat": HEADER + HEARTBEAT + HEARTBEAT,
    "unknown_method": method(1, 60, 999, b"\x01\x02") + method(1, 11, 10),
}


def captured(name):
    """The bytes of `const std::vector<uint8_t> <name> = {...};` in packet_test.cpp."""
    with open(PACKET_TEST) as fp:
        m = re.search(r"\b" + name + r"\s*=\s*\{([^}]*)\}", fp.read())
    return bytes(int(v, 0) for v in m.group(1).replace(",", " ").split())


def ip4(s): return socket.inet_pton(socket.AF_INET, s)
def addrs(*a): return u8(len(a)) + b"".join(a)


V3, IPV6 = 1, 2  # fuzz_vrrp's flags


def vrrp_config(flags, vrid, vips, own, peers=(), auth_type=0, auth=b"", interval_cs=100):
    return (u8(flags) + u8(vrid) + u8(auth_type) + auth.ljust(8, b"\x00") + u16(interval_cs)
            + addrs(*vips) + addrs(*own) + addrs(*peers))


# keepalived's adverts (packet_test.cpp): VRID 80 from 10.214.0.1 / fe80::ff:fe00:1, VIP
# 10.214.0.100 / 2001:db8:214::100, advert_int 1, v2 with auth_pass 1111.
VIP4, SRC4 = ip4("10.214.0.100"), ip4("10.214.0.1")
VIP6, SRC6, GROUP6 = (socket.inet_pton(socket.AF_INET6, a) for a in ("2001:db8:214::100", "fe80::ff:fe00:1", "ff02::12"))


def vrrp_seeds():
    v2, v3, v3_ip6 = captured("kKeepalivedV2"), captured("kKeepalivedV3"), captured("kKeepalivedV3Ip6")
    return {
        "keepalived_v2_auth": vrrp_config(0, 80, [VIP4], [ip4("10.214.0.2")], auth_type=1, auth=b"1111") + v2,
        "keepalived_v3": vrrp_config(V3, 80, [VIP4], [ip4("10.214.0.2")]) + v3,
        "keepalived_v3_unicast": vrrp_config(V3, 80, [VIP4], [], peers=[SRC4]) + v3,
        "keepalived_v3_other_vrid": vrrp_config(V3, 51, [VIP4], []) + v3,
        "keepalived_v3_ip6": vrrp_config(V3 | IPV6, 80, [VIP6], []) + SRC6 + GROUP6 + u8(255) + v3_ip6,
    }


def http_opts(cuts=(), header_limit=7, body_limit=3):
    """fuzz_http's options byte and chunk lengths: the default-sized limits, no split."""
    return u8(len(cuts) | header_limit << 3 | body_limit << 6) + bytes(cuts)


HTTP_SEEDS = {
    "get_basic_auth": http_opts([5, 17])
    + b"GET /haproxy;csv?x=1&name=a%20b HTTP/1.1\r\nHost: h\r\n"
    b"Authorization: Basic YWRtaW46c2VjcmV0\r\nX-Twice: a\r\nx-twice: b\r\n\r\n",
    "post_form": http_opts([0])
    + b"POST /api/queues?vhost=%2F HTTP/1.1\r\nHost: h\r\n"
    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 19\r\n\r\nname=q+1&durable=on",
    "pipelined_keep_alive": http_opts([3, 40, 1])
    + b"GET /metrics HTTP/1.1\r\nHost: h\r\n\r\n"
    b"HEAD / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n"
    b"POST /ctl HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    b"4\r\ncmd=\r\n6\r\nstatus\r\n0\r\n\r\n",
    "http10_small_limits": http_opts([7], header_limit=0, body_limit=0)
    + b"POST /x HTTP/1.0\r\nContent-Length: 20\r\n\r\nYWRtaW46c2VjcmV0PT09",
    "response": http_opts()
    + b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: close\r\n\r\n{}",
}


def main():
    for target, seeds in (("frame", FRAME_SEEDS), ("vrrp", vrrp_seeds()), ("http", HTTP_SEEDS)):
        out = os.path.join(HERE, "corpus", target)
        os.makedirs(out, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(out, name + ".bin"), "wb") as fp:
                fp.write(data)
        print(f"gen_corpus: {len(seeds)} seeds -> {out}")


if __name__ == "__main__":
    main()
