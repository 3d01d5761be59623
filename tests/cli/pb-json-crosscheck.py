#!/usr/bin/env python3
"""Cross-checks cli/pb-json.c against python's google.protobuf.json_format.

    pb-json-crosscheck.py TOOL SET TYPE [SET TYPE ...]

For each descriptor set and message type, loads the set into a python
DescriptorPool (no generated _pb2 modules), builds random messages that
cover every field kind (fixed seed), and checks through TOOL
(tests/cli/pb-json-tool, batch mode) that:

  - bytes -> C JSON: json_format.Parse() of it equals the message, and the
    JSON object equals python's MessageToDict() of the same message;
  - python JSON -> C bytes: parsing those bytes in python equals the message;

each with lowerCamelCase names, with proto names (--proto-names), and with
the fields without presence included at their defaults (--defaults). Exits 77 (skipped) only when
python has no google.protobuf.
"""

import json
import math
import random
import struct
import subprocess
import sys

try:
    from google.protobuf import descriptor_pb2, descriptor_pool, json_format
    from google.protobuf import message_factory
    from google.protobuf.descriptor import FieldDescriptor as FD
except ImportError:
    print("python3-protobuf is not installed, skipping")
    sys.exit(77)

MESSAGES_PER_TYPE = 150
MAX_DEPTH = 4


def message_class(pool, name):
    desc = pool.FindMessageTypeByName(name)
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def as_float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def random_string(rng):
    alphabet = ["a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x7f",
                "é", "ß", "€", "中", "😀", "\U0010fffd"]
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))


def random_scalar(rng, field, singular_proto3):
    t = field.type
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return rng.choice([0, 1, -1, 2**31 - 1, -2**31, rng.randint(-2**31, 2**31 - 1)])
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return rng.choice([0, 1, 2**32 - 1, rng.randint(0, 2**32 - 1)])
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return rng.choice([0, 1, -1, 2**63 - 1, -2**63, 2**53 + 1, rng.randint(-2**63, 2**63 - 1)])
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return rng.choice([0, 1, 2**64 - 1, 2**53 + 1, rng.randint(0, 2**64 - 1)])
    if t == FD.TYPE_FLOAT:
        v = rng.choice([0.0, 0.1, -2.5, 1e-45, 3.4028234663852886e38, float("inf"),
                        float("-inf"), float("nan"), rng.uniform(-1e6, 1e6), rng.uniform(-1, 1) * 1e-30])
        return as_float32(v)
    if t == FD.TYPE_DOUBLE:
        v = rng.choice([0.0, 0.1, 21.5, -1e308, 5e-324, 1e20, float("inf"), float("-inf"),
                        float("nan"), rng.uniform(-1e10, 1e10), -0.0])
        if singular_proto3 and v == 0:
            v = 0.0     # -0.0 in a field without presence is not on the wire in either library
        return v
    if t == FD.TYPE_BOOL:
        return rng.choice([False, True])
    if t == FD.TYPE_STRING:
        return random_string(rng)
    if t == FD.TYPE_BYTES:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 9)))
    if t == FD.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values]
        # proto3 enums are open: numbers without a name must pass too
        if field.enum_type.file.syntax == "proto3" and rng.random() < 0.15:
            return rng.choice([77, -1000])
        return rng.choice(values)
    raise AssertionError("unexpected type %d" % t)


def is_map(field):
    return (field.type == FD.TYPE_MESSAGE and field.message_type.GetOptions().map_entry)


def fill_well_known(rng, msg):
    name = msg.DESCRIPTOR.full_name
    nanos = rng.choice([0, rng.randint(1, 999) * 1000000, rng.randint(1, 999999) * 1000,
                        rng.randint(1, 999999999)])
    if name == "google.protobuf.Timestamp":
        msg.seconds = rng.choice([0, -1, -62135596800, 253402300799, 1700000000,
                                  rng.randint(-62135596800, 253402300799)])
        msg.nanos = nanos
        return True
    if name == "google.protobuf.Duration":
        seconds = rng.choice([0, 1, 315576000000, rng.randint(0, 315576000000)])
        if rng.random() < 0.5:
            seconds, nanos = -seconds, -nanos
        msg.seconds, msg.nanos = seconds, nanos
        return True
    return False


def fill(rng, msg, depth):
    if fill_well_known(rng, msg):
        return
    desc = msg.DESCRIPTOR
    proto3 = desc.file.syntax == "proto3"
    oneof_done = set()
    for field in desc.fields:
        oneof = field.containing_oneof
        synthetic = oneof is not None and len(oneof.fields) == 1 and proto3
        if oneof is not None and not synthetic:
            if oneof.name in oneof_done:
                continue
            oneof_done.add(oneof.name)
            if rng.random() < 0.25:
                continue
            field = rng.choice(oneof.fields)
        elif rng.random() < 0.3 and field.label != FD.LABEL_REQUIRED:
            continue
        if field.type == FD.TYPE_MESSAGE and depth >= MAX_DEPTH:
            continue
        if is_map(field):
            container = getattr(msg, field.name)
            kf = field.message_type.fields_by_name["key"]
            vf = field.message_type.fields_by_name["value"]
            for _ in range(rng.randint(0, 4)):
                key = random_scalar(rng, kf, False)
                if vf.type == FD.TYPE_MESSAGE:
                    fill(rng, container[key], depth + 1)
                else:
                    container[key] = random_scalar(rng, vf, False)
        elif field.label == FD.LABEL_REPEATED:
            container = getattr(msg, field.name)
            for _ in range(rng.randint(0, 4)):
                if field.type == FD.TYPE_MESSAGE:
                    fill(rng, container.add(), depth + 1)
                else:
                    container.append(random_scalar(rng, field, False))
        elif field.type == FD.TYPE_MESSAGE:
            sub = getattr(msg, field.name)
            sub.SetInParent()
            fill(rng, sub, depth + 1)
        else:
            no_presence = proto3 and oneof is None
            setattr(msg, field.name, random_scalar(rng, field, no_presence))


def same_scalar(a, b):
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def same_message(a, b):
    """Equality that treats NaN as equal to NaN, unlike ==."""
    if a.DESCRIPTOR is not b.DESCRIPTOR:
        return False
    fa = {f.number: (f, v) for f, v in a.ListFields()}
    fb = {f.number: (f, v) for f, v in b.ListFields()}
    if fa.keys() != fb.keys():
        return False
    for number, (field, va) in fa.items():
        vb = fb[number][1]
        if is_map(field):
            if set(va.keys()) != set(vb.keys()):
                return False
            vf = field.message_type.fields_by_name["value"]
            for k in va:
                if vf.type == FD.TYPE_MESSAGE:
                    if not same_message(va[k], vb[k]):
                        return False
                elif not same_scalar(va[k], vb[k]):
                    return False
        elif field.label == FD.LABEL_REPEATED:
            if len(va) != len(vb):
                return False
            for x, y in zip(va, vb):
                if field.type == FD.TYPE_MESSAGE:
                    if not same_message(x, y):
                        return False
                elif not same_scalar(x, y):
                    return False
        elif field.type == FD.TYPE_MESSAGE:
            if not same_message(va, vb):
                return False
        elif not same_scalar(va, vb):
            return False
    return True


def default_json(field):
    t = field.type
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64, FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return "0"
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return 0.0
    if t == FD.TYPE_BOOL:
        return False
    if t in (FD.TYPE_STRING, FD.TYPE_BYTES):
        return ""
    if t == FD.TYPE_ENUM:
        return field.enum_type.values_by_number[0].name
    return 0


def add_defaults(msg, js, proto_names):
    """MessageToDict(msg) plus the fields without presence at their defaults.

    That is what --defaults promises. python's including_default_value_fields
    adds proto2 `optional` fields too, which have presence, and newer python
    releases (always_print_fields_with_no_presence) no longer do; we follow
    those.
    """
    if not isinstance(js, dict):
        return js       # a well-known type in its own JSON form
    proto3 = msg.DESCRIPTOR.file.syntax == "proto3"
    for field in msg.DESCRIPTOR.fields:
        name = field.name if proto_names else field.json_name
        repeated = field.label == FD.LABEL_REPEATED
        if name in js:
            if is_map(field):
                vf = field.message_type.fields_by_name["value"]
                if vf.type == FD.TYPE_MESSAGE:
                    container = getattr(msg, field.name)
                    for k in container:
                        key = str(k).lower() if isinstance(k, bool) else str(k)
                        add_defaults(container[k], js[name][key], proto_names)
            elif field.type == FD.TYPE_MESSAGE and repeated:
                for sub, sub_js in zip(getattr(msg, field.name), js[name]):
                    add_defaults(sub, sub_js, proto_names)
            elif field.type == FD.TYPE_MESSAGE:
                add_defaults(getattr(msg, field.name), js[name], proto_names)
            continue
        if is_map(field):
            js[name] = {}
        elif repeated:
            js[name] = []
        elif proto3 and field.containing_oneof is None and field.type != FD.TYPE_MESSAGE:
            js[name] = default_json(field)
    return js


def same_json(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        # python writes floats with at least 6 digits (1.4013e-45), C with as few
        # as read back the same float32 (1e-45); the message comparisons are exact
        return same_scalar(float(a), float(b)) or same_scalar(as_float32(a), as_float32(b))
    return a == b


class Tool:
    def __init__(self, tool, set_path, type_name, flags):
        self.proc = subprocess.Popen([tool] + flags + [set_path, type_name, "batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     universal_newlines=True, encoding="utf-8")

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("pb-json-tool died (exit status %s)" % self.proc.wait())
        status, _, rest = answer.rstrip("\n").partition(" ")
        return status, rest

    def close(self):
        self.proc.stdin.close()
        return self.proc.wait()


def check(tool_path, set_path, type_name, pool, rng):
    cls = message_class(pool, type_name)
    failures = 0
    variants = [([], False, False), (["--proto-names"], True, False), (["--defaults"], False, True)]
    for flags, proto_names, defaults in variants:
        tool = Tool(tool_path, set_path, type_name, flags)
        for i in range(MESSAGES_PER_TYPE):
            msg = cls()
            fill(rng, msg, 0)
            what = "%s #%d %s" % (type_name, i, " ".join(flags))

            # C decodes the bytes python wrote; python parses C's JSON
            status, text = tool.ask("d " + msg.SerializeToString().hex())
            if status != "ok":
                print("FAIL %s: C could not decode: %s\n  %s" % (what, text, msg))
                failures += 1
                continue
            back = cls()
            try:
                json_format.Parse(text, back)
            except json_format.ParseError as e:
                print("FAIL %s: python rejects C's JSON: %s\n  %s" % (what, e, text))
                failures += 1
                continue
            if not same_message(msg, back):
                print("FAIL %s: C's JSON means another message\n  %s\n  %s" % (what, msg, text))
                failures += 1
            expected = json_format.MessageToDict(msg, preserving_proto_field_name=proto_names)
            if defaults:
                expected = add_defaults(msg, expected, proto_names)
            if not same_json(json.loads(text), expected):
                print("FAIL %s: JSON differs\n  C:      %s\n  python: %s" %
                      (what, text, json.dumps(expected)))
                failures += 1

            # C encodes the JSON python wrote; python parses C's bytes
            status, text = tool.ask("e " + json.dumps(expected, ensure_ascii=(i % 2 == 0)))
            if status != "ok":
                print("FAIL %s: C rejects python's JSON: %s\n  %s" % (what, text, json.dumps(expected)))
                failures += 1
                continue
            back = cls.FromString(bytes.fromhex(text))
            if not same_message(msg, back):
                print("FAIL %s: C's bytes mean another message\n  %s\n  %s" % (what, msg, back))
                failures += 1
        if tool.close() != 0:
            print("FAIL %s: pb-json-tool exited with an error" % type_name)
            failures += 1
    return failures


def main():
    if len(sys.argv) < 4 or len(sys.argv) % 2 != 0:
        print(__doc__)
        return 2
    tool = sys.argv[1]
    rng = random.Random(12)
    pool = descriptor_pool.DescriptorPool()
    added = set()
    failures = 0
    pairs = list(zip(sys.argv[2::2], sys.argv[3::2]))
    for set_path, _ in pairs:
        with open(set_path, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())
        for fp in fds.file:
            if fp.name not in added:
                pool.Add(fp)
                added.add(fp.name)
    for set_path, type_name in pairs:
        failures += check(tool, set_path, type_name, pool, rng)
    print("%d failures" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
