#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into corpus/<target>/.

Run from anywhere: python3 tests/fuzz/make-corpus.py. The seeds are small
and committed; this script says how each was made. Protobuf is encoded by
hand (a few lines) so that no protobuf package is needed, and so that
seeds can hold what an encoder would never write (field number 0,
non-minimal varints, invalid UTF-8, embedded NULs).
"""

import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

CALL, REPLY, ERROR, SIGNAL, HELLO = 1, 2, 3, 4, 5


def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def vfield(n, v):
    return varint(n << 3) + varint(v)


def sfield(n, s):
    if isinstance(s, str):
        s = s.encode()
    return varint(n << 3 | 2) + varint(len(s)) + s


def header(kind, serial=1, reply_serial=0, destination=None, member=None, flags=0,
           error_name=None, timeout_ms=0, extra=b""):
    h = vfield(1, kind) + vfield(2, serial)
    if reply_serial:
        h += vfield(3, reply_serial)
    if destination is not None:
        h += sfield(4, destination)
    if member is not None:
        h += sfield(6, member)
    if flags:
        h += vfield(7, flags)
    if error_name is not None:
        h += sfield(8, error_name)
    if timeout_ms:
        h += vfield(9, timeout_ms)
    return h + extra


def frame(h, payload=b""):
    return struct.pack("<I", len(h)) + h + payload


HELLO_PAYLOAD = vfield(1, 1) + sfield(2, "seed")

# A field-0 tag, written as the non-minimal varint 80 80 00, with value 1.
FIELD0 = b"\x80\x80\x00\x01"


def header_seeds():
    return {
        "hello": frame(header(HELLO), HELLO_PAYLOAD),
        "call-broker-ping": frame(header(CALL, 2, destination="plexus", member="Ping")),
        "call-client": frame(header(CALL, 3, destination=":2", member="Echo", flags=1,
                                    timeout_ms=500), b"payload"),
        "reply": frame(header(REPLY, 4, reply_serial=3, destination=":1"), b"answer"),
        "error": frame(header(ERROR, 5, reply_serial=3, destination=":1",
                              error_name="org.example.Error"), b"why"),
        "signal": frame(header(SIGNAL, 6, member="sensors/kitchen/temp"), b"21.5"),
        # The stamped fields written by a client: the broker must override them.
        "signal-forged-stamp": frame(header(SIGNAL, 7, member="a/b", extra=
                                            sfield(5, ":1") + vfield(10, 99) + vfield(11, 5) +
                                            vfield(12, 0) + vfield(13, 1) + vfield(14, 7) +
                                            vfield(15, 0)), b"x"),
        "unknown-fields": frame(header(SIGNAL, 8, member="a", extra=
                                       vfield(20, 1) + sfield(21, b"\x00\x01") +
                                       varint(22 << 3 | 5) + b"\x00\x00\x00\x00" +
                                       varint(23 << 3 | 1) + b"\x00" * 8)),
        "duplicate-fields": frame(header(CALL, 9, destination="x", member="a") +
                                  sfield(4, "org.example.B") + vfield(2, 10)),
        "field0": frame(header(SIGNAL, 10, member="a/b") + FIELD0, b"p"),
        "member-nul": frame(header(CALL, 11, destination=":2", member=b"Get\x00Secret")),
        "member-bad-utf8": frame(header(SIGNAL, 12, member=b"a/\xff\xfe")),
        "zero-length-header": b"\x00\x00\x00\x00",
        "empty": b"",
        "non-minimal-varints": frame(b"\x88\x80\x00\x04" + b"\x10\x81\x80\x80\x00" +
                                     sfield(6, "t")),
    }


# fuzz-broker records: op = action * 3 + client.
RAW, METHOD, CALLOP, SIGNALOP, ANSWER, RECONNECT, FDS, GARBAGE = range(8)
METHODS = ["Subscribe", "Unsubscribe", "Ping", "GetBusInfo", "RequestName", "ReleaseName",
           "RenewName", "GetNameOwner", "ListQueuedOwners", "ListNames", "BecomeMonitor",
           "ListClients", "GetClient", "GetStats", "NoSuchMethod"]
DESTS = [":1", ":2", ":3", ":4", ":5", "org.fuzz.A", "org.fuzz.B", "plexus", "org.fuzz", "nobody",
         ":99999999999999999999", ""]
MEMBERS = ["Ping", "Echo", "RequestName", "a", "", "Subscribe"]


def u16(n):
    return struct.pack("<H", n)


def op(action, client):
    return bytes([action * 3 + client])


def rec_raw(client, data):
    return op(RAW, client) + u16(len(data)) + data


def rec_method(client, method, s=None, flags=0, lease=0, raw=b"", serial=0):
    m = METHODS.index(method)
    if s is not None:
        s = s.encode() if isinstance(s, str) else s
        return op(METHOD, client) + bytes([m | 0x80, len(s)]) + s + bytes([flags, lease, serial])
    return op(METHOD, client) + bytes([m]) + u16(len(raw)) + raw + bytes([serial])


def rec_call(client, dest, member, flags=0, timeout=0, serial=0, payload=b"", action=CALLOP,
             n_fds=None):
    pre = op(action, client)
    if action == FDS:
        pre += bytes([n_fds - 1])
    return pre + bytes([DESTS.index(dest), MEMBERS.index(member), flags, timeout, serial]) + \
        u16(len(payload)) + payload


def rec_signal(client, topic, payload=b"", serial=0):
    topic = topic.encode() if isinstance(topic, str) else topic
    return op(SIGNALOP, client) + bytes([len(topic)]) + topic + bytes([serial]) + \
        u16(len(payload)) + payload


def rec_answer(client, error=False, payload=b""):
    return op(ANSWER, client) + bytes([1 if error else 0]) + u16(len(payload)) + payload


def broker_seeds():
    seeds = {}
    for m in METHODS:
        arg = {"Subscribe": "a/#", "Unsubscribe": "a/#", "RequestName": "org.fuzz.A",
               "ReleaseName": "org.fuzz.A", "RenewName": "org.fuzz.A",
               "GetNameOwner": "org.fuzz.A", "ListQueuedOwners": "org.fuzz.A",
               "GetClient": ":2"}.get(m)
        recs = rec_method(0, "RequestName", "org.fuzz.A", lease=100)
        recs += rec_method(1, "Subscribe", "a/#")
        if arg is not None:
            recs += rec_method(1, m, arg, lease=50)
        else:
            recs += rec_method(1, m, raw=b"")
        seeds["method-" + m] = recs
    seeds["list-clients-paged"] = rec_method(0, "ListClients", raw=vfield(1, 1) + vfield(2, 1))
    seeds["request-name-will"] = rec_method(
        0, "RequestName", raw=sfield(1, "org.fuzz.B") + vfield(2, 1) + vfield(3, 1000) +
        sfield(4, "wills/b") + sfield(5, b"gone")) + \
        rec_method(1, "Subscribe", "wills/#") + rec_call(1, "org.fuzz.B", "Echo") + \
        op(RECONNECT, 0) + b"\x00"
    seeds["call-and-reply"] = (rec_method(0, "RequestName", "org.fuzz.A") +
                               rec_call(1, "org.fuzz.A", "Echo", payload=b"hi") +
                               rec_answer(0, payload=b"ho") +
                               rec_call(1, ":1", "Ping", timeout=5) +
                               rec_answer(0, error=True, payload=b"no"))
    seeds["pubsub"] = (rec_method(1, "Subscribe", "a/+") + rec_method(2, "Subscribe", "#") +
                       rec_signal(0, "a/b", b"x") + rec_signal(0, "plexus/x") +
                       rec_method(1, "Unsubscribe", "a/+") + rec_signal(0, "a/b"))
    # A monitor sees frames the broker encodes anew: the field-0 header goes through it.
    seeds["monitor-field0"] = (rec_method(2, "BecomeMonitor", raw=b"") +
                               rec_method(1, "Subscribe", "a/b") +
                               rec_raw(0, frame(header(SIGNAL, 77, member="a/b") + FIELD0, b"p")) +
                               rec_raw(0, frame(header(CALL, 78, destination=":2", member="X") +
                                                FIELD0)))
    seeds["monitor-filters"] = (rec_method(2, "BecomeMonitor", raw=sfield(1, "a/#") +
                                           sfield(2, ":1") + sfield(3, "Echo")) +
                                rec_signal(0, "a/b") + rec_call(0, ":2", "Echo"))
    seeds["fds"] = (rec_call(0, ":2", "Echo", n_fds=3, action=FDS) + rec_answer(1) +
                    rec_call(0, "plexus", "Ping", n_fds=1, action=FDS))
    seeds["reconnect"] = (rec_method(0, "RequestName", "org.fuzz.A") +
                          rec_method(1, "RequestName", "org.fuzz.A", flags=4) +
                          rec_call(2, "org.fuzz.A", "Echo") + op(RECONNECT, 0) + b"\x01" +
                          op(RECONNECT, 2) + b"\x00" + rec_method(1, "GetNameOwner", "org.fuzz.A"))
    seeds["zero-length-record"] = rec_raw(0, b"") + rec_method(1, "Ping", raw=b"")
    seeds["member-nul"] = rec_raw(0, frame(header(CALL, 5, destination="plexus",
                                                  member=b"Ping\x00Evil")))
    seeds["member-bad-utf8"] = (rec_method(1, "Subscribe", "#") +
                                rec_raw(0, frame(header(SIGNAL, 6, member=b"a/\xc3\x28"))) +
                                rec_signal(0, b"a/\xff"))
    seeds["garbage"] = (op(GARBAGE, 0) + b"\x07" + op(GARBAGE, 1) + b"\x14" +
                        rec_raw(2, b"\x01\x00\x00\x00\xff"))
    seeds["second-hello"] = rec_raw(0, frame(header(HELLO, 9), HELLO_PAYLOAD))
    seeds["limits"] = b"".join(rec_method(0, "Subscribe", "t/%d" % i) for i in range(10)) + \
        b"".join(rec_call(0, ":2", "Echo", serial=0x81) for _ in range(3)) + \
        b"".join(rec_call(0, ":2", "Echo") for _ in range(6))
    return seeds


def topic_seeds():
    j = lambda *xs: b"\x00".join(x.encode() if isinstance(x, str) else x for x in xs)
    return {
        "basic": j("a/b/c", "a/+/c", "a/#", "#", "+", "a/b", "a"),
        "names": j("org.example.Name", ":1", ":123", "plexus.x", "a.b", ".a", "a..b", "_x.y-z"),
        "reserved": j("plexus", "plexus/names/org.example.A", "plexus/#", "plexusx/a"),
        "bad": j("a//b", "/a", "a/", "a/b#", "a/#/b", "++", "a b", b"a/\xff", ""),
        "deep": j("/".join(["x"] * 32), "/".join(["x"] * 33), "/".join(["+"] * 32), "x" * 255),
        "overlap": j("a/+/+", "a/b/#", "+/b/c", "a/b/c", "a/b/c/d", "#", "a/#", "a"),
        "unique-long": j(":" + "9" * 20, ":" + "9" * 21, ":0", ":01"),
    }


def config_seeds():
    seeds = {}
    with open(os.path.join(HERE, "..", "..", "systemd", "plexusd.conf"), "rb") as f:
        seeds["system"] = f.read()
    seeds["limits"] = b"""[limits]
max_clients = 10
max_queue_frames = 16
max_queue_bytes = 131136
max_queue_fds = 0
max_subscriptions = 1
max_pending_calls = 1048576
max_names = 2
default_timeout_ms = 100
max_timeout_ms = 100
hello_timeout_ms = 1
shutdown_timeout_ms = 0
"""
    seeds["policy"] = b"""[policy:printer-service]
; user names or uids; "*" = every user
users = root 1000
groups = root 1200
own = org.example.Printer org.example.Printer.*
call = org.example.Spooler:Submit* *:Ping
publish = printers/#
subscribe = printers/# plexus/names/#
monitor = no

[policy:admins]
groups = 0
monitor = yes
call = :1:Ping, *:*
"""
    seeds["bad-range"] = b"[limits]\nmax_clients = 0\n"
    seeds["timeouts"] = b"[limits]\ndefault_timeout_ms = 5000\nmax_timeout_ms = 10\n"
    seeds["bad-section"] = b"[nope]\nx = 1\n"
    seeds["no-users"] = b"[policy:x]\nown = a.b\n"
    seeds["bad-pattern"] = b"[policy:x]\nusers = *\nsubscribe = a/#/b\n"
    seeds["garbage"] = b"max_clients\n[limits\n=\n"
    seeds["empty"] = b""
    return seeds


def pb_dynamic_seeds():
    """FileDescriptorSets as protoc-c writes them (it is a build dependency
    anyway): the unit tests' files and plexus.proto, whole and cut short."""
    import subprocess
    import tempfile
    root = os.path.dirname(os.path.dirname(HERE))
    seeds = {}
    sources = {
        "everything": ("tests/cli", "pb-json-test.proto"),
        "proto2": ("tests/cli", "pb-json-proto2.proto"),
        "plexus": ("proto", "plexus.proto"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, (folder, proto) in sources.items():
            out = os.path.join(tmp, name)
            subprocess.run(["protoc-c", "--proto_path=" + os.path.join(root, folder),
                            "--proto_path=/usr/include", "--include_imports",
                            "--descriptor_set_out=" + out, os.path.join(root, folder, proto)],
                           check=True)
            with open(out, "rb") as f:
                seeds[name] = f.read()
    seeds["truncated"] = seeds["plexus"][:len(seeds["plexus"]) // 2]
    seeds["empty"] = b""
    return seeds


def write(target, seeds):
    d = os.path.join(CORPUS, target)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def main():
    write("fuzz-header", header_seeds())
    write("fuzz-broker", broker_seeds())
    write("fuzz-topic-name", topic_seeds())
    write("fuzz-config", config_seeds())
    write("fuzz-pb-dynamic", pb_dynamic_seeds())


if __name__ == "__main__":
    main()
