#!/usr/bin/python3
"""Write the seed corpus for fuzz_frame (test/fuzz/corpus/frame/*.bin).

Each seed is a plausible connection byte stream: optional protocol header, then method,
content header, body and heartbeat frames, with field tables using every type tag.
Standard library only; encodings written here by hand from the spec, independently of
the C++ codec.
"""

import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "frame")
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

SEEDS = {
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


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(OUT, name + ".bin"), "wb") as fp:
            fp.write(data)
    print(f"gen_corpus: {len(SEEDS)} seeds -> {OUT}")


if __name__ == "__main__":
    main()
