-- Wireshark/tshark dissector for Plexus captures (plexusctl capture).
--
-- plexusctl writes classic pcap files with link type LINKTYPE_USER0 (147);
-- each record is one Plexus frame in the wire format of docs/protocol.md
-- §2.1: a little-endian u32 H, H bytes of plexus.Header (protobuf), and the
-- payload up to the end of the record. This dissector shows the prefix, the
-- header and payload lengths, and the header's fields, decoded with a small
-- protobuf reader (field numbers from proto/plexus.proto); the payload is
-- opaque, as it is to the broker. A large frame's record holds no payload:
-- its size, path (memfd or process_vm) and transfer id are in the header.
--
-- Use:   tshark -X lua_script:/usr/share/plexus/plexus.lua -r bus.pcap
-- or copy it to ~/.local/lib/wireshark/plugins/ for Wireshark.

local plexus = Proto("plexus", "Plexus message bus frame")

local kinds = { [1] = "CALL", [2] = "REPLY", [3] = "ERROR", [4] = "SIGNAL", [5] = "HELLO" }

local f = plexus.fields
f.header_len = ProtoField.uint32("plexus.header_len", "Header length", base.DEC)
f.payload_len = ProtoField.uint32("plexus.payload_len", "Payload length", base.DEC)
f.header = ProtoField.bytes("plexus.header", "Header")
f.payload = ProtoField.bytes("plexus.payload", "Payload")
f.kind = ProtoField.uint32("plexus.kind", "Kind", base.DEC, kinds)
f.serial = ProtoField.uint64("plexus.serial", "Serial", base.DEC)
f.reply_serial = ProtoField.uint64("plexus.reply_serial", "Reply serial", base.DEC)
f.destination = ProtoField.string("plexus.destination", "Destination")
f.sender = ProtoField.string("plexus.sender", "Sender")
f.member = ProtoField.string("plexus.member", "Member or topic")
f.flags = ProtoField.uint32("plexus.flags", "Flags", base.HEX)
f.error_name = ProtoField.string("plexus.error_name", "Error name")
f.timeout_ms = ProtoField.uint32("plexus.timeout_ms", "Timeout (ms)", base.DEC)
f.sequence = ProtoField.uint64("plexus.sequence", "Sequence", base.DEC)
f.delivery = ProtoField.uint64("plexus.delivery", "Delivery", base.DEC)
f.sender_uid = ProtoField.uint32("plexus.sender_uid", "Sender uid", base.DEC)
f.sender_pid = ProtoField.uint32("plexus.sender_pid", "Sender pid", base.DEC)
f.n_fds = ProtoField.uint32("plexus.n_fds", "File descriptors", base.DEC)
f.sender_gid = ProtoField.uint32("plexus.sender_gid", "Sender gid", base.DEC)
f.large_size = ProtoField.uint64("plexus.large_size", "Large payload size", base.DEC)
f.large_addr = ProtoField.uint64("plexus.large_addr", "Large payload address (lent)", base.HEX)
f.transfer_id = ProtoField.uint64("plexus.transfer_id", "Transfer id", base.DEC)
f.unknown = ProtoField.bytes("plexus.unknown", "Unknown field")

-- plexus.Header: field number -> (protofield, wire type 0 = varint, 2 = string)
local header_fields = {
    [1] = { f.kind, 0 }, [2] = { f.serial, 0 }, [3] = { f.reply_serial, 0 },
    [4] = { f.destination, 2 }, [5] = { f.sender, 2 }, [6] = { f.member, 2 },
    [7] = { f.flags, 0 }, [8] = { f.error_name, 2 }, [9] = { f.timeout_ms, 0 },
    [10] = { f.sequence, 0 }, [11] = { f.delivery, 0 }, [12] = { f.sender_uid, 0 },
    [13] = { f.sender_pid, 0 }, [14] = { f.n_fds, 0 }, [15] = { f.sender_gid, 0 },
    [16] = { f.large_size, 0 }, [17] = { f.large_addr, 0 }, [18] = { f.transfer_id, 0 },
}
local is_uint64 = { [2] = true, [3] = true, [10] = true, [11] = true, [16] = true, [17] = true, [18] = true }

local ef_malformed = ProtoExpert.new("plexus.malformed", "Malformed Plexus frame",
                                     expert.group.MALFORMED, expert.severity.ERROR)
plexus.experts = { ef_malformed }

-- A varint at @off, before @limit: its value (UInt64) and the next offset, or nil.
local function varint(tvb, off, limit)
    local v = UInt64(0)
    local shift = 0
    while off < limit and shift < 64 do
        local b = tvb(off, 1):uint()
        off = off + 1
        v = v:bor(UInt64(bit32.band(b, 0x7f)):lshift(shift))
        if b < 0x80 then
            return v, off
        end
        shift = shift + 7
    end
    return nil
end

-- The header's fields into @tree; returns a table of what the Info column needs.
local function dissect_header(tvb, tree, off, limit, pinfo)
    local seen = {}
    while off < limit do
        local start = off
        local key
        key, off = varint(tvb, off, limit)
        if not key then
            tree:add_proto_expert_info(ef_malformed, "truncated field key")
            return seen
        end
        local number = key:rshift(3):tonumber()
        local wire = key:band(7):tonumber()
        local known = header_fields[number]
        if wire == 0 then
            local v
            v, off = varint(tvb, off, limit)
            if not v then
                tree:add_proto_expert_info(ef_malformed, "truncated varint")
                return seen
            end
            if known and known[2] == 0 then
                if is_uint64[number] then
                    tree:add(known[1], tvb(start, off - start), v)
                else
                    tree:add(known[1], tvb(start, off - start), v:tonumber())
                end
                seen[number] = v:tonumber()
            else
                tree:add(f.unknown, tvb(start, off - start)):append_text(" (field " .. number .. ", varint)")
            end
        elseif wire == 2 then
            local len
            len, off = varint(tvb, off, limit)
            if not len or off + len:tonumber() > limit then
                tree:add_proto_expert_info(ef_malformed, "truncated length-delimited field")
                return seen
            end
            local n = len:tonumber()
            if known and known[2] == 2 then
                local s = n > 0 and tvb(off, n):string() or ""
                tree:add(known[1], tvb(start, off + n - start), s)
                seen[number] = s
            else
                tree:add(f.unknown, tvb(start, off + n - start)):append_text(" (field " .. number .. ")")
            end
            off = off + n
        elseif wire == 1 or wire == 5 then
            local n = wire == 1 and 8 or 4
            if off + n > limit then
                tree:add_proto_expert_info(ef_malformed, "truncated fixed-size field")
                return seen
            end
            tree:add(f.unknown, tvb(start, off + n - start)):append_text(" (field " .. number .. ")")
            off = off + n
        else
            tree:add_proto_expert_info(ef_malformed, "unknown wire type " .. wire)
            return seen
        end
    end
    return seen
end

function plexus.dissector(tvb, pinfo, tree)
    local total = tvb:captured_len()
    pinfo.cols.protocol = "Plexus"
    local t = tree:add(plexus, tvb())
    if total < 4 then
        t:add_proto_expert_info(ef_malformed, "shorter than the 4-byte prefix")
        return total
    end
    local h = tvb(0, 4):le_uint()
    t:add_le(f.header_len, tvb(0, 4))
    if h == 0 or 4 + h > total then
        t:add_proto_expert_info(ef_malformed, "header length 0 or past the end of the frame")
        return total
    end
    local payload_len = total - 4 - h
    t:add(f.payload_len, payload_len):set_generated()

    local ht = t:add(f.header, tvb(4, h))
    local seen = dissect_header(tvb, ht, 4, 4 + h, pinfo)
    if payload_len > 0 then
        t:add(f.payload, tvb(4 + h, payload_len))
    end

    local kind = kinds[seen[1]] or "INVALID"
    local name = seen[6] or seen[8]
    -- A large frame (docs/protocol.md §17) is its descriptor: the bytes are in a memfd or
    -- the sender's memory, never in the capture.
    local size = string.format("payload %d bytes", payload_len)
    if seen[16] and seen[16] ~= 0 then
        if seen[17] and seen[17] ~= 0 then
            size = string.format("large payload %.0f bytes, process_vm, transfer %.0f", seen[16], seen[18] or 0)
        else
            size = string.format("large payload %.0f bytes, memfd", seen[16])
        end
    end
    pinfo.cols.src = seen[5] or ""
    pinfo.cols.dst = seen[4] or ""
    pinfo.cols.info = string.format("%s %s -> %s%s (header %d, %s)", kind, seen[5] or "?",
                                    seen[4] or "*", name and " " .. name or "", h, size)
    t:append_text(string.format(", %s, header %d bytes, %s", kind, h, size))
    return total
end

DissectorTable.get("wtap_encap"):add((wtap_encaps or wtap).USER0, plexus)
