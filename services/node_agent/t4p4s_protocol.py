"""T4P4S's own control protocol, the controller's side, as far as table-entry adds need it.

T4P4S (P4ELTE/t4p4s) is not controlled over P4Runtime by default: the switch connects over TCP to a
controller listening on ``localhost:T4P4S_CTL_PORT`` (fixed when the switch is built; 11111 in its
examples) and the controller sends it messages that are C structs laid out as
``src/hardware_dep/shared/ctrl_plane/messages.h`` declares them (natural alignment, not packed),
concatenated: a header, then the body; the header's ``length`` is that of the whole message.

    struct p4_header { u8 version; u8 type; u16 length; u32 xid; }     length and xid big-endian

    P4T_ADD_TABLE_ENTRY (104)                                            offset  size
      p4_add_table_entry  header, char table_name[128], u8 read_size      0      140 (3 pad)
      read_size field matches, each by its type (p4_field_match_header: char name[128], u8 type):
        exact (0)    u16 length (bits, BE) @130, char bitmap[256] @132             388
        ternary (1)  u16 length @130, u8 priority @132, bitmap @133, mask @389     646
        lpm (2)      u16 prefix_length (BE) @130, bitmap @132                      388
        range (3)    u16 length @130, u8 is_signed @132, min @133, max @389        646
      p4_action          u8 type (0: action), char name[128], u8 param_size         130
      param_size p4_action_parameter: char name[128], u32 length (bits, BE), bitmap[128]   260
    P4T_CTRL_INITIALIZED (5)  a header alone: the controller is done; the switch, which waits
                              for it before it starts forwarding, goes on

The switch looks a table up by its P4 name (hlir16's ``canonical_name``, as in the P4Info) and an
action by its name, takes the key fields by position (in the key's order, the P4Info's) and the
parameters by position, copying ``(bits + 7) // 8`` bytes of each bitmap. Values are in network
byte order, as P4Runtime's. A message is at most 2,048 bytes (the switch's buffer cells), with at
most 10 field matches and 10 parameters.

The switch answers nothing: no message acknowledges an add (``P4T_SUCCESS`` exists in the enum
but nothing sends it), and it has no handler for reads, modifies or removes (``recv_from_controller``
handles adds, default actions and CTRL_INITIALIZED only). A write is known to have reached the
switch's socket, not to have been applied.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 1
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, SUCCESS, CTRL_INITIALIZED = 0, 1, 2, 3, 4, 5
SET_DEFAULT_ACTION, ADD_TABLE_ENTRY, MODIFY_TABLE_ENTRY, REMOVE_TABLE_ENTRY = 103, 104, 105, 106
DIGEST = 110

EXACT, TERNARY, LPM, RANGE, VALID = 0, 1, 2, 3, 4
HEADER = struct.Struct("!BBHI")
NAME_LEN = 128          # P4_MAX_TABLE_NAME_LEN, P4_MAX_FIELD_NAME_LEN, P4_MAX_ACTION_NAME_LEN
FIELD_LEN = 256         # MAX_FIELD_LENGTH: bytes of a match value
PARAM_LEN = 128         # MAX_ACTION_PARAMETER_BITMAP_LENGTH
MAX_MESSAGE = 2048      # the switch's receive cells (P4_BG_MEM_CELL_SIZE)
MAX_MATCHES = MAX_PARAMS = 10  # P4_MAX_NUMBER_OF_FIELD_MATCHES, P4_MAX_NUMBER_OF_ACTION_PARAMETERS
ADD_TABLE_ENTRY_SIZE, ACTION_SIZE, PARAM_SIZE = 140, 130, 260
MATCH_SIZE = {EXACT: 388, LPM: 388, TERNARY: 646, RANGE: 646}


class Unencodable(ValueError):
    """The entry does not fit T4P4S's messages (a name too long, a value too wide, too many fields)."""


@dataclass(frozen=True)
class Match:
    name: str
    kind: int           # EXACT, TERNARY, LPM, RANGE
    bits: int
    value: bytes        # big-endian, (bits + 7) // 8 bytes (range: the low end)
    mask: bytes = b""   # ternary
    prefix_len: int = 0  # lpm
    high: bytes = b""   # range
    priority: int = 0   # ternary


@dataclass(frozen=True)
class Param:
    name: str
    bits: int
    value: bytes


def header(kind: int, length: int, xid: int = 0) -> bytes:
    return HEADER.pack(VERSION, kind, length, xid)


def ctrl_initialized(xid: int = 0) -> bytes:
    return header(CTRL_INITIALIZED, HEADER.size, xid)


def _name(text: str, what: str) -> bytes:
    raw = text.encode()
    if len(raw) >= NAME_LEN:
        raise Unencodable(f"{what} {text!r} is longer than T4P4S's {NAME_LEN - 1} bytes")
    return raw.ljust(NAME_LEN, b"\0")


def _bitmap(value: bytes, size: int, what: str) -> bytes:
    if len(value) > size:
        raise Unencodable(f"{what} is {len(value)} bytes, more than T4P4S's {size}")
    return value.ljust(size, b"\0")


def _match(m: Match) -> bytes:
    head = _name(m.name, "match field") + bytes([m.kind]) + b"\0"  # 129 bytes, then pad to the u16
    if m.kind == EXACT:
        body = struct.pack("!H", m.bits) + _bitmap(m.value, FIELD_LEN, m.name)
    elif m.kind == LPM:
        body = struct.pack("!H", m.prefix_len) + _bitmap(m.value, FIELD_LEN, m.name)
    elif m.kind == TERNARY:
        if not 0 <= m.priority <= 255:
            raise Unencodable(f"priority {m.priority}: T4P4S takes 0..255")
        body = (struct.pack("!HB", m.bits, m.priority) + _bitmap(m.value, FIELD_LEN, m.name)
                + _bitmap(m.mask, FIELD_LEN, m.name) + b"\0")
    elif m.kind == RANGE:
        body = (struct.pack("!HB", m.bits, 0) + _bitmap(m.value, FIELD_LEN, m.name)
                + _bitmap(m.high, FIELD_LEN, m.name) + b"\0")
    else:
        raise Unencodable(f"match kind {m.kind}")
    out = head + body
    assert len(out) == MATCH_SIZE[m.kind]
    return out


def add_table_entry(table: str, matches: list[Match], action: str, params: list[Param], xid: int = 0) -> bytes:
    """One P4T_ADD_TABLE_ENTRY message (header included)."""
    if len(matches) > MAX_MATCHES or len(params) > MAX_PARAMS:
        raise Unencodable(f"{len(matches)} match fields and {len(params)} parameters: T4P4S takes at most "
                          f"{MAX_MATCHES} of each")
    body = _name(table, "table") + bytes([len(matches)]) + b"\0\0\0"
    body += b"".join(_match(m) for m in matches)
    body += bytes([0]) + _name(action, "action") + bytes([len(params)])  # P4_AT_ACTION
    for p in params:
        body += _name(p.name, "parameter") + struct.pack("!I", p.bits) + _bitmap(p.value, PARAM_LEN, p.name)
    length = HEADER.size + len(body)
    if length > MAX_MESSAGE:
        raise Unencodable(f"the message is {length} bytes, more than the {MAX_MESSAGE} a T4P4S switch reads")
    return header(ADD_TABLE_ENTRY, length, xid) + body


def with_xid(message: bytes, xid: int) -> bytes:
    version, kind, length, _ = HEADER.unpack_from(message)
    return HEADER.pack(version, kind, length, xid) + message[HEADER.size:]
