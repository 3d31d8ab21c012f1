"""Indexed counters, meters and registers of the reference target (spec §9.3.2, §9.4.2, §9.7).

Each P4Info counter / meter / register is an array of ``size`` cells.  A cell not written holds the
default (counter 0/0, meter config "GREEN for every packet", register 0).  The arrays are stored
sparsely over a *base* value: a write without ``index`` (every cell, spec §9.3.2 / §9.4.2 / §9.7)
sets the base and forgets the cells, so a P4Info array of any size costs what was written to it.

All three take MODIFY only (INSERT and DELETE are INVALID_ARGUMENT, spec §9.3.2, §9.4.2; §9.7 gives
no other update type for a register, and PI refuses them too).  An index is INVALID_ARGUMENT when
negative and OUT_OF_RANGE when not below ``size``.  Reads: id 0 reads every cell of every array of
the kind, an id without ``index`` every cell of that array (a wildcard read of more than
:data:`MAX_READ_CELLS` cells is RESOURCE_EXHAUSTED: split it by index).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from kubep4.p4 import p4i, p4r
from kubep4.reftarget.errors import Code, fail, q
from kubep4.reftarget.values import check_bytes, modify_only

__all__ = ["CounterStore", "MeterStore", "RegisterStore", "check_counter_data", "check_meter_config",
           "check_meter_counter_data", "MAX_READ_CELLS"]

MAX_READ_CELLS = 1_000_000   # cells one wildcard read returns at most
MeterType = p4i.MeterSpec.Type


def check_counter_data(data: p4r.CounterData, what: str) -> tuple[int, int]:
    """A CounterData as (byte_count, packet_count).

    The spec does not say what a negative count means; counts only grow from 0, so a negative one is
    refused (INVALID_ARGUMENT) rather than stored and read back as such."""
    if data.byte_count < 0 or data.packet_count < 0:
        raise fail(Code.INVALID_ARGUMENT, f"{what}: counts cannot be negative")
    return data.byte_count, data.packet_count


def counter_data(value: tuple[int, int]) -> p4r.CounterData:
    return p4r.CounterData(byte_count=value[0], packet_count=value[1])


def check_meter_config(config: p4r.MeterConfig, spec: p4i.MeterSpec, what: str) -> p4r.MeterConfig:
    """A MeterConfig valid for a meter of ``spec.type`` (spec §9.4): a trTCM takes no ``eburst``; an
    srTCM has ``pir == cir`` and ``pburst == cburst``; a single-rate two-color marker both and no
    ``eburst``; INVALID_ARGUMENT otherwise.  Beyond the spec, as BMv2 behind PI refuses them: negative
    rates or bursts, and a trTCM whose ``cir`` exceeds its ``pir``."""
    for name in ("cir", "cburst", "pir", "pburst", "eburst"):
        if getattr(config, name) < 0:
            raise fail(Code.INVALID_ARGUMENT, f"{what}.{name} cannot be negative")
    kind = spec.type
    if kind == MeterType.TWO_RATE_THREE_COLOR:
        if config.eburst:
            raise fail(Code.INVALID_ARGUMENT, f"{what}: a two-rate three-color meter takes no eburst")
        if config.cir > config.pir:
            raise fail(Code.INVALID_ARGUMENT, f"{what}: cir {config.cir} exceeds pir {config.pir}")
    elif kind in (MeterType.SINGLE_RATE_THREE_COLOR, MeterType.SINGLE_RATE_TWO_COLOR):
        if config.pir != config.cir or config.pburst != config.cburst:
            raise fail(Code.INVALID_ARGUMENT, f"{what}: a single-rate meter needs pir == cir and "
                                              "pburst == cburst")
        if kind == MeterType.SINGLE_RATE_TWO_COLOR and config.eburst:
            raise fail(Code.INVALID_ARGUMENT, f"{what}: a single-rate two-color meter takes no eburst")
    else:
        raise fail(Code.INVALID_ARGUMENT, f"{what}: unknown meter type {kind}")
    out = p4r.MeterConfig()
    out.CopyFrom(config)
    return out


def check_meter_counter_data(data: p4r.MeterCounterData, what: str) -> None:
    """A MeterCounterData in a write only clears the per-color counters: every sub-field must be 0
    (spec §9.4.1, §9.1.x direct resources), else INVALID_ARGUMENT."""
    for color in ("green", "yellow", "red"):
        d = getattr(data, color)
        if d.byte_count or d.packet_count:
            raise fail(Code.INVALID_ARGUMENT, f"{what}.{color}: per-color counters can only be reset to 0")


def zero_meter_counters() -> p4r.MeterCounterData:
    """The per-color counters of a meter: this target forwards no packets, so they stay 0."""
    out = p4r.MeterCounterData()
    for color in ("green", "yellow", "red"):
        getattr(out, color).SetInParent()
    return out


@dataclass
class _Array:
    id: int
    name: str
    size: int
    info: Any                          # the P4Info Counter / Meter / Register
    base: Any = None                   # the value of every cell not in ``cells``
    cells: dict[int, Any] = field(default_factory=dict)

    def copy(self) -> "_Array":
        return _Array(self.id, self.name, self.size, self.info, self.base, dict(self.cells))

    def get(self, index: int) -> Any:
        return self.cells.get(index, self.base)


class _IndexedStore:
    """Arrays of one kind; subclasses say how a write becomes a cell value and a cell an entity."""

    kind = ""            # "counter"
    entity_field = ""    # "counter_entry"
    id_field = ""        # "counter_id"
    p4info_field = ""    # "counters"

    def __init__(self, info: p4i.P4Info | None = None, arrays: dict[int, _Array] | None = None):
        if arrays is None:
            arrays = {}
            for obj in getattr(info, self.p4info_field, ()):
                arrays[obj.preamble.id] = _Array(obj.preamble.id, q(obj.preamble.name), obj.size, obj,
                                                 self.default())
        self.arrays = arrays

    def default(self) -> Any:
        raise NotImplementedError

    def value_of(self, arr: _Array, msg, old: Any) -> Any:
        """The cell value a write of ``msg`` leaves (``old`` is the cell's value before)."""
        raise NotImplementedError

    def fill(self, arr: _Array, index: int, value: Any, query) -> Any:
        """The entity message (e.g. CounterEntry) read back for a cell."""
        raise NotImplementedError

    # ----------------------------------------------------------------- state

    def copy(self):
        return type(self)(arrays={k: a.copy() for k, a in self.arrays.items()})

    def _array(self, obj_id: int) -> _Array:
        if obj_id == 0:
            raise fail(Code.INVALID_ARGUMENT, f"{self.id_field} 0 is not a {self.kind} (wildcards are for reads)")
        arr = self.arrays.get(obj_id)
        if arr is None:
            raise fail(Code.INVALID_ARGUMENT, f"unknown {self.kind} id {obj_id}")
        return arr

    def _index(self, arr: _Array, msg) -> int | None:
        if not msg.HasField("index"):
            return None
        index = msg.index.index
        if index < 0:
            raise fail(Code.INVALID_ARGUMENT, f"index {index} of {self.kind} {arr.name} is negative")
        if index >= arr.size:
            raise fail(Code.OUT_OF_RANGE, f"index {index} is out of range: {self.kind} {arr.name} has "
                                          f"{arr.size} cells")
        return index

    # ----------------------------------------------------------------- write / read

    def write(self, update: p4r.Update) -> None:
        msg = getattr(update.entity, self.entity_field)
        modify_only(update, f"a {self.kind} entry")
        arr = self._array(getattr(msg, self.id_field))
        index = self._index(arr, msg)
        if index is None:   # every cell
            value = self.value_of(arr, msg, None)
            if value is not _UNCHANGED:
                arr.base = value
                arr.cells.clear()
            return
        value = self.value_of(arr, msg, arr.get(index))
        if value is not _UNCHANGED:
            arr.cells[index] = value

    def read(self, entity: p4r.Entity) -> list[p4r.Entity]:
        msg = getattr(entity, self.entity_field)
        obj_id = getattr(msg, self.id_field)
        if obj_id == 0:
            if msg.HasField("index"):
                raise fail(Code.INVALID_ARGUMENT, f"a wildcard {self.kind} read ({self.id_field} 0) takes "
                                                  "no index")
            arrays = [self.arrays[k] for k in sorted(self.arrays)]
        else:
            arr = self.arrays.get(obj_id)
            if arr is None:
                raise fail(Code.INVALID_ARGUMENT, f"unknown {self.kind} id {obj_id}")
            index = self._index(arr, msg)
            if index is not None:
                return [self._entity(arr, index, msg)]
            arrays = [arr]
        total = sum(a.size for a in arrays)
        if total > MAX_READ_CELLS:
            raise fail(Code.RESOURCE_EXHAUSTED, f"this read would return {total} {self.kind} cells; at most "
                                                f"{MAX_READ_CELLS} per entity: read by index")
        return [self._entity(a, i, msg) for a in arrays for i in range(a.size)]

    def _entity(self, arr: _Array, index: int, query) -> p4r.Entity:
        out = self.fill(arr, index, arr.get(index), query)
        setattr(out, self.id_field, arr.id)
        out.index.index = index
        return p4r.Entity(**{self.entity_field: out})

    def items(self) -> Iterator[tuple[_Array, int, Any]]:
        """Every written cell, for reconciliation: (array, index or None for the base, value)."""
        for arr in self.arrays.values():
            if arr.base != self.default():
                yield arr, None, arr.base
            for i, v in arr.cells.items():
                yield arr, i, v

    def reconcile(self, info: p4i.P4Info) -> tuple["_IndexedStore", list[str]]:
        """This state under a new P4Info (RECONCILE_AND_COMMIT, spec §7.3): an array keeps its cells
        when the new P4Info has an object of the kind with its id and shape; the problems otherwise."""
        new = type(self)(info)
        problems: list[str] = []
        for arr in self.arrays.values():
            written = arr.base != self.default() or arr.cells
            if not written:
                continue
            other = new.arrays.get(arr.id)
            if other is None:
                problems.append(f"{self.kind} {arr.name} (id {arr.id}) holding state is gone")
            elif not self.same_shape(arr, other):
                problems.append(f"{self.kind} {arr.name} (id {arr.id}) changed its size or type")
            else:
                other.base, other.cells = arr.base, dict(arr.cells)
        return new, problems

    def same_shape(self, old: _Array, new: _Array) -> bool:
        return old.size == new.size


_UNCHANGED = object()


class CounterStore(_IndexedStore):
    """Indexed counters (spec §9.3.2): a MODIFY without ``data`` leaves the counts as they are."""

    kind, entity_field, id_field, p4info_field = "counter", "counter_entry", "counter_id", "counters"

    def default(self) -> tuple[int, int]:
        return (0, 0)

    def value_of(self, arr, msg: p4r.CounterEntry, old):
        if not msg.HasField("data"):
            return _UNCHANGED
        return check_counter_data(msg.data, "counter_entry.data")

    def fill(self, arr, index, value, query) -> p4r.CounterEntry:
        return p4r.CounterEntry(data=counter_data(value))


class MeterStore(_IndexedStore):
    """Indexed meters (spec §9.4.2): a MODIFY without ``config`` resets the cells to the default
    (GREEN for every packet), which reads back with ``config`` unset; ``counter_data`` in a MODIFY
    resets the per-color counters (all 0 here) and in a read asks for them."""

    kind, entity_field, id_field, p4info_field = "meter", "meter_entry", "meter_id", "meters"

    def default(self) -> None:
        return None

    def value_of(self, arr, msg: p4r.MeterEntry, old):
        if msg.HasField("counter_data"):
            check_meter_counter_data(msg.counter_data, "meter_entry.counter_data")
        if not msg.HasField("config"):
            return None
        return check_meter_config(msg.config, arr.info.spec, "meter_entry.config")

    def fill(self, arr, index, value, query: p4r.MeterEntry) -> p4r.MeterEntry:
        out = p4r.MeterEntry()
        if value is not None:
            out.config.CopyFrom(value)
        if query.HasField("counter_data"):
            out.counter_data.CopyFrom(zero_meter_counters())
        return out

    def same_shape(self, old, new) -> bool:
        return old.size == new.size and old.info.spec.type == new.info.spec.type


class RegisterStore(_IndexedStore):
    """Registers (spec §9.7): a MODIFY carries a ``data`` P4Data of the register's ``type_spec``
    (INVALID_ARGUMENT otherwise); a cell never written reads back as 0 (``bitstring`` ``\\x00``, or
    ``bool`` false).  A real BMv2 refuses register Writes and Reads through PI; this target implements
    them as the spec says."""

    kind, entity_field, id_field, p4info_field = "register", "register_entry", "register_id", "registers"

    def default(self) -> bytes:
        return b""   # the zero of any type: filled per type on read

    def value_of(self, arr, msg: p4r.RegisterEntry, old):
        if not msg.HasField("data"):
            raise fail(Code.INVALID_ARGUMENT, f"a register entry for {arr.name} needs data")
        return check_register_data(arr.info.type_spec, msg.data, f"register_entry.data ({arr.name})")

    def fill(self, arr, index, value, query) -> p4r.RegisterEntry:
        out = p4r.RegisterEntry()
        if value:
            out.data.ParseFromString(value)
        else:
            out.data.CopyFrom(zero_data(arr.info.type_spec))
        return out

    def same_shape(self, old, new) -> bool:
        return old.size == new.size and \
            old.info.type_spec.SerializeToString(deterministic=True) == \
            new.info.type_spec.SerializeToString(deterministic=True)


def _bit_spec(spec) -> tuple[str, int] | None:
    """(kind, bitwidth) of a bitstring / bool type spec, None for anything else."""
    which = spec.WhichOneof("type_spec")
    if which == "bitstring":
        b = spec.bitstring
        kind = b.WhichOneof("type_spec")
        if kind == "bit":
            return "bit", b.bit.bitwidth
        if kind == "int":
            return "int", b.int.bitwidth
        if kind == "varbit":
            return "varbit", b.varbit.max_bitwidth
        return None
    if which == "bool":
        return "bool", 1
    return None


def check_register_data(spec, data, what: str) -> bytes:
    """``data`` (a P4Data) as stored: bit<W> / int<W> / varbit<W> take a ``bitstring`` (``varbit`` for
    varbit) that fits W bits, bool a ``bool``; INVALID_ARGUMENT otherwise.  Registers of header,
    struct, tuple or other types are UNIMPLEMENTED here."""
    shape = _bit_spec(spec)
    if shape is None:
        raise fail(Code.UNIMPLEMENTED, f"{what}: registers of this type_spec are not supported")
    kind, width = shape
    given = data.WhichOneof("data")
    if kind == "bool":
        if given != "bool":
            raise fail(Code.INVALID_ARGUMENT, f"{what}: the register holds a bool, not {given}")
    elif kind == "varbit":
        if given != "varbit":
            raise fail(Code.INVALID_ARGUMENT, f"{what}: the register holds a varbit, not {given}")
        if data.varbit.bitwidth > width:
            raise fail(Code.INVALID_ARGUMENT, f"{what}: varbit of {data.varbit.bitwidth} bits exceeds "
                                              f"the register's {width}")
        check_bytes(data.varbit.bitstring, data.varbit.bitwidth, what)
    else:
        if given != "bitstring":
            raise fail(Code.INVALID_ARGUMENT, f"{what}: the register holds a bitstring of {width} bits, "
                                              f"not {given}")
        check_bytes(data.bitstring, width, what)
    return data.SerializeToString(deterministic=True)


def zero_data(spec):
    """The P4Data of a register cell never written."""
    out = type(p4r.RegisterEntry().data)()
    shape = _bit_spec(spec)
    if shape is not None and shape[0] == "bool":
        out.bool = False
    elif shape is not None and shape[0] == "varbit":
        out.varbit.bitstring = b"\x00"
    else:
        out.bitstring = b"\x00"
    return out
