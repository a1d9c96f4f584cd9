#!/usr/bin/env python3
"""Writes protocol-v1.vec: golden encodings of every sshttp v1 message.

This is a second, independent encoder written from spec/protocol.md, so the vectors
are not just the Rust encoder's output played back to it. The Rust test
(crates/protocol/tests/vectors.rs) decodes every vector, compares it with the value the
vector's `meaning` describes, and re-encodes it byte for byte.

Run: python3 spec/vectors/generate.py > spec/vectors/protocol-v1.vec
"""
import struct

NO_BODY, BODY_INLINE = 0x1, 0x2


def u32(n):
    return struct.pack(">I", n)


def string(b):
    if isinstance(b, str):
        b = b.encode()
    return u32(len(b)) + b


def header_list(pairs):
    return u32(len(pairs)) + b"".join(string(n) + string(v) for n, v in pairs)


def name_list(names):
    return string(",".join(names))


def header_open(defaults):
    return u32(1) + header_list(defaults)


def header_confirm(header_id, extensions):
    return u32(1) + u32(header_id) + name_list(extensions)


def header_update(set_, remove):
    return header_list(set_) + name_list(remove)


def request_open(header_id, flags, target, headers, body=None):
    out = u32(header_id) + u32(flags) + string(target) + header_list(headers)
    if flags & BODY_INLINE:
        out += string(body)
    return out


def response(status, headers):
    return u32(status) + u32(0) + header_list(headers)


def trailers(headers):
    return header_list(headers)


def reset(code, description):
    return u32(code) + string(description)


VECTORS = [
    ("header-open-api", "header-open", None,
     "version 1; defaults host: api.example.com, user-agent: sshttp/0.1, cookie: session=abc",
     header_open([("host", "api.example.com"), ("user-agent", "sshttp/0.1"), ("cookie", "session=abc")])),
    ("header-confirm-plain", "header-confirm", None,
     "version 1, header-id 1, no extensions",
     header_confirm(1, [])),
    ("header-confirm-extensions", "header-confirm", None,
     "version 1, header-id 7, extensions example-a@sshttp.org and example-b@sshttp.org",
     header_confirm(7, ["example-a@sshttp.org", "example-b@sshttp.org"])),
    ("header-update-cookie", "header-update", None,
     "set cookie: session=abc; theme=dark, remove user-agent",
     header_update([("cookie", "session=abc; theme=dark")], ["user-agent"])),
    ("request-get-no-body", "request-open", "http-get",
     "GET /multiply?a=4&b=5 on header-id 1, NO_BODY, accept: application/json",
     request_open(1, NO_BODY, "/multiply?a=4&b=5", [("accept", "application/json")])),
    ("request-post-inline", "request-open", "http-post",
     "POST /echo on header-id 1, BODY_INLINE \"hello\", content-type: text/plain, content-length: 5",
     request_open(1, BODY_INLINE, "/echo", [("content-type", "text/plain"), ("content-length", "5")], "hello")),
    ("request-put-streamed", "request-open", "http-put",
     "PUT /upload without header channel, streamed body, host: static.example.com, content-type: application/octet-stream",
     request_open(0, 0, "/upload", [("host", "static.example.com"), ("content-type", "application/octet-stream")])),
    ("request-options-asterisk", "request-open", "http-options",
     "OPTIONS * without header channel, NO_BODY, no headers",
     request_open(0, NO_BODY, "*", [])),
    ("request-connect", "request-open", "http-connect",
     "CONNECT api.example.com:80 without header channel, NO_BODY, no headers",
     request_open(0, NO_BODY, "api.example.com:80", [])),
    ("request-websocket-upgrade", "request-open", "http-get",
     "GET /ws on header-id 1, NO_BODY, upgrade: websocket, sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==, sec-websocket-version: 13",
     request_open(1, NO_BODY, "/ws", [("upgrade", "websocket"), ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                      ("sec-websocket-version", "13")])),
    ("request-extension-method", "request-open", "http-=purge",
     "extension method purge (lower case) on /cache/logo.png, header-id 2, NO_BODY, no headers",
     request_open(2, NO_BODY, "/cache/logo.png", [])),
    ("response-ok", "response", None,
     "200, content-type: text/plain, content-length: 2",
     response(200, [("content-type", "text/plain"), ("content-length", "2")])),
    ("response-early-hints", "response", None,
     "interim 103, link: </style.css>; rel=preload",
     response(103, [("link", "</style.css>; rel=preload")])),
    ("response-switching-protocols", "response", None,
     "101, upgrade: websocket, sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
     response(101, [("upgrade", "websocket"), ("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")])),
    ("trailers-server-timing", "trailers", None,
     "server-timing: total;dur=12.5, x-checksum: 9a0364b9",
     trailers([("server-timing", "total;dur=12.5"), ("x-checksum", "9a0364b9")])),
    ("reset-cancel", "reset", None,
     "CANCEL (3), description \"client went away\"",
     reset(3, "client went away")),
    ("reset-unknown-code", "reset", None,
     "unknown code 0x1000 (acts as INTERNAL_ERROR), empty description",
     reset(0x1000, "")),
]


def hex_lines(data, width=32):
    text = data.hex()
    chunks = [text[i:i + 8] for i in range(0, len(text), 8)]
    per_line = width // 4
    lines = [" ".join(chunks[i:i + per_line]) for i in range(0, len(chunks), per_line)]
    return lines or [""]


def main():
    print("# sshttp protocol version 1: golden encodings (spec/protocol.md, Test Vectors).")
    print("# Generated by spec/vectors/generate.py; checked by crates/protocol/tests/vectors.rs.")
    print("# Each block is the type-specific data of one SSH message, hex in 4-byte groups.")
    for name, message, channel_type, meaning, data in VECTORS:
        print()
        print(f"name: {name}")
        print(f"message: {message}")
        if channel_type:
            print(f"channel-type: {channel_type}")
        print(f"meaning: {meaning}")
        lines = hex_lines(data)
        print(f"hex: {lines[0]}")
        for line in lines[1:]:
            print(f"     {line}")


if __name__ == "__main__":
    main()
