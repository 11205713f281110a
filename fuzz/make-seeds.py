#!/usr/bin/env python3
"""Writes the committed seed corpora under fuzz/corpus/ (run from anywhere: python3 fuzz/make-seeds.py).

Seeds are small and few on purpose: libFuzzer grows its own corpus from them in a scratch copy
(run.sh). They come from the protocol's examples (Protocol.md), the conformance suite's raw
messages (Sources/VersoConformance), RFC 7396's examples, and deflate streams and WebSocket frames
built here. Each seed's file name is the SHA-1 of its bytes, as libFuzzer names corpus files.
"""
import hashlib
import json
import os
import re
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def protocol_examples():
    text = open(os.path.join(ROOT, "Protocol.md"), encoding="utf-8").read()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    inline = re.findall(r"`(\{\"type\":[^`]*\})`", text)
    return [b.strip() for b in blocks] + inline


def conformance_messages():
    """The raw-string literals the conformance suite sends; interpolations become 1."""
    found = []
    folder = os.path.join(ROOT, "Sources", "VersoConformance")
    for dirpath, _, files in os.walk(folder):
        for name in sorted(files):
            if name.endswith(".swift"):
                source = open(os.path.join(dirpath, name), encoding="utf-8").read()
                for literal in re.findall(r'#"(.*?)"#', source):
                    found.append(re.sub(r"\\#\([^)]*\)", "1", literal))
    return found


def json_edge_cases():
    return [
        '"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/"', "-0.5e+10", "123456789012345678901234567890",
        '{"a":[1,2,{"b":null}],"c":true,"d":false}', "[]", "{}", " [ ] ",
        "[" * 64 + "]" * 64, "[" * 65 + "]" * 65, '{"a":1,"a":2}', '"\\ud800"', '"é✓😀"',
    ]


# RFC 7396 appendix A: (target, patch).
MERGE_CASES = [
    ('{"a":"b"}', '{"a":"c"}'), ('{"a":"b"}', '{"b":"c"}'), ('{"a":"b"}', '{"a":null}'),
    ('{"a":"b","b":"c"}', '{"a":null}'), ('{"a":["b"]}', '{"a":"c"}'), ('{"a":"c"}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}'), ('{"a":[{"b":"c"}]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]'), ('{"a":"b"}', '["c"]'), ('{"a":"foo"}', "null"), ('{"a":"foo"}', '"bar"'),
    ('{"e":null}', '{"a":1}'), ('[1,2]', '{"a":"b","c":null}'), ('{}', '{"a":{"bb":{"ccc":null}}}'),
    ('{"title":"hi"}', '{"tags":["a"],"title":null}'),
]


def deflate(message, final=False):
    """A permessage-deflate payload: raw deflate, sync-flushed, 00 00 ff ff removed (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    if final:
        return compressor.compress(message) + compressor.flush(zlib.Z_FINISH)
    return (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflate_frame(payload, fin=True, rsv1=True, opcode=2, masked=False):
    """One frame in FuzzInflate's input format: flags, length, payload."""
    assert len(payload) < 256
    flags = (1 if fin else 0) | (2 if rsv1 else 0) | (opcode << 2) | (16 if masked else 0)
    if masked:
        key = bytes([0x37, 0xFA, 0x21, 0x3D])
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([flags, len(payload)]) + payload


def wire_frame(payload, opcode=1, fin=True, rsv1=False, mask=b"\x11\x22\x33\x44", length_form=None):
    """One WebSocket frame as a client sends it (RFC 6455 5.2)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    form = length_form or ("7" if n < 126 else "16" if n < 65536 else "64")
    if form == "7":
        header = bytes([first, mask_bit | n])
    elif form == "16":
        header = bytes([first, mask_bit | 126]) + struct.pack(">H", n)
    else:
        header = bytes([first, mask_bit | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header += mask
    return header + payload


def write(target, seeds):
    folder = os.path.join(HERE, "corpus", target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for seed in seeds:
        data = seed.encode("utf-8") if isinstance(seed, str) else seed
        with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as out:
            out.write(data)
    print(f"{target}: {len(os.listdir(folder))} seeds")


def main():
    examples = protocol_examples()
    conformance = conformance_messages()
    requests = [m for m in examples + conformance if '"type"' in m]
    write("FuzzJSON", examples + conformance + json_edge_cases())
    write("FuzzRequest", requests + ['{"type":"txn","ops":[]}', '{"type":"list","limit":1001}'])

    patches = [f"{t}\0{p}" for t, p in MERGE_CASES]
    for message in requests:
        try:
            value = json.loads(message)
        except ValueError:
            continue
        if isinstance(value, dict) and isinstance(value.get("patch"), dict):
            patches.append(json.dumps(value["patch"], separators=(",", ":")))
    write("FuzzMergePatch", patches)

    messages = [m.encode("utf-8") for m in examples[:8]]
    long_message = json.dumps({"type": "put", "key": "notes/9", "base": 0,
                               "data": {"body": "lorem ipsum " * 60}}).encode()
    inflate_seeds = [inflate_frame(deflate(m), opcode=1) for m in messages]
    inflate_seeds.append(inflate_frame(deflate(messages[0]), masked=True))
    inflate_seeds.append(inflate_frame(deflate(messages[1], final=True)))
    payload = deflate(long_message)
    half = len(payload) // 2
    inflate_seeds.append(inflate_frame(payload[:half], fin=False, opcode=1)
                         + inflate_frame(b"ping", opcode=3, rsv1=False)
                         + inflate_frame(payload[half:], rsv1=False, opcode=0))
    inflate_seeds.append(inflate_frame(messages[2], rsv1=False, opcode=1)
                         + inflate_frame(deflate(messages[3]), opcode=1))
    inflate_seeds.append(inflate_frame(deflate(b"\0" * 5000)[:200]))
    write("FuzzInflate", inflate_seeds)

    frames = [
        wire_frame(messages[0]),
        wire_frame(messages[1], opcode=2, mask=None),
        wire_frame(b"", opcode=9) + wire_frame(b"pong", opcode=10),
        wire_frame(struct.pack(">H", 1000) + b"bye", opcode=8),
        wire_frame(messages[2][:10], fin=False) + wire_frame(b"", opcode=9) + wire_frame(messages[2][10:], opcode=0),
        wire_frame(deflate(messages[3]), rsv1=True),
        wire_frame(b"x" * 300, length_form="16"),
        wire_frame(b"short", length_form="64"),
        wire_frame(b"x" * 130, opcode=9, length_form="16"),
        wire_frame(b"", opcode=9, fin=False),
        bytes([0x81, 0xFF]) + struct.pack(">Q", 1 << 40),
    ]
    write("FuzzFrameDecoder", [bytes([selector]) + frame for selector, frame in zip(range(len(frames)), frames)]
          + [bytes([3]) + b"".join(frames[:4])])


if __name__ == "__main__":
    main()
