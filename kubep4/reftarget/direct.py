"""Direct counters and direct meters of the reference target (spec §9.1.x "Direct Resources",
§9.3.1 DirectCounterEntry, §9.4.1 DirectMeterEntry).

A table whose P4Info names a direct counter (``DirectCounter.direct_table_id``) has one counter cell
per table entry, its default entry included; likewise for a direct meter.  The cell lives and dies
with its entry: :class:`~kubep4.reftarget.device.Device` calls :meth:`DirectStore.entry_written` and
:meth:`DirectStore.entry_deleted` from the table store, and resolves a ``DirectCounterEntry`` /
``DirectMeterEntry``'s ``table_entry`` to an installed entry (NOT_FOUND when there is none) before
it reaches this module.

The ``TableEntry`` fields, as spec §9.1.x lists them:

* ``counter_data``: INSERT sets the counter (unset: 0); MODIFY sets it when set, leaves it when unset;
  a Read returns it only when the request's ``TableEntry`` has the field set (to anything);
* ``meter_config``: INSERT and MODIFY set the config when set and reset it to the default (GREEN
  for every packet) when unset; a Read returns it when asked, and unset when it is the default;
* ``meter_counter_data``: in a write, clears the per-color counters (every sub-field must be 0, else
  INVALID_ARGUMENT); in a Read, asked-for, it comes back (all 0: this target forwards no packets).

Any of them on a table without that direct resource is INVALID_ARGUMENT.  ``DirectCounterEntry`` and
``DirectMeterEntry`` take MODIFY only (INSERT / DELETE: INVALID_ARGUMENT).
"""
from __future__ import annotations

from typing import Any, Hashable

from kubep4.p4 import p4i, p4r
from kubep4.reftarget.errors import Code, fail, q
from kubep4.reftarget.indexed import (
    check_counter_data,
    check_meter_config,
    check_meter_counter_data,
    counter_data,
    zero_meter_counters,
)

__all__ = ["DirectStore", "DEFAULT_KEY"]

DEFAULT_KEY = "default"   # the key of a table's default entry (an EntryKey is a tuple)
UpdateType = p4r.Update.Type


class DirectStore:
    """The direct counter and meter cells of every table entry of a device."""

    def __init__(self, info: p4i.P4Info | None = None):
        self.counter_of: dict[int, p4i.DirectCounter] = {}
        self.meter_of: dict[int, p4i.DirectMeter] = {}
        if info is not None:
            for c in info.direct_counters:
                self.counter_of[c.direct_table_id] = c
            for m in info.direct_meters:
                self.meter_of[m.direct_table_id] = m
        # table id -> entry key -> value; absent: the default (0/0 counts, GREEN meter)
        self.counters: dict[int, dict[Hashable, tuple[int, int]]] = {}
        self.meters: dict[int, dict[Hashable, p4r.MeterConfig]] = {}

    def copy(self) -> "DirectStore":
        out = DirectStore()
        out.counter_of, out.meter_of = self.counter_of, self.meter_of
        out.counters = {t: dict(c) for t, c in self.counters.items()}
        out.meters = {t: dict(m) for t, m in self.meters.items()}
        return out

    # ----------------------------------------------------------------- TableEntry fields

    def check_entry(self, table_id: int, table_name: str, entry: p4r.TableEntry) -> None:
        """Refuse direct-resource fields the table cannot take, and invalid values (before any change)."""
        if entry.HasField("counter_data"):
            if table_id not in self.counter_of:
                raise fail(Code.INVALID_ARGUMENT, f"table {table_name} has no direct counter: "
                                                  "counter_data cannot be set")
            check_counter_data(entry.counter_data, "counter_data")
        if entry.HasField("meter_config") or entry.HasField("meter_counter_data"):
            meter = self.meter_of.get(table_id)
            if meter is None:
                raise fail(Code.INVALID_ARGUMENT, f"table {table_name} has no direct meter: "
                                                  "meter_config / meter_counter_data cannot be set")
            if entry.HasField("meter_config"):
                check_meter_config(entry.meter_config, meter.spec, "meter_config")
            if entry.HasField("meter_counter_data"):
                check_meter_counter_data(entry.meter_counter_data, "meter_counter_data")

    def entry_written(self, table_id: int, key: Hashable, entry: p4r.TableEntry, insert: bool) -> None:
        """Apply a checked INSERT (``insert``) or MODIFY of an entry to its direct cells."""
        if table_id in self.counter_of:
            cells = self.counters.setdefault(table_id, {})
            if entry.HasField("counter_data"):
                cells[key] = check_counter_data(entry.counter_data, "counter_data")
            elif insert:
                cells.pop(key, None)
        if table_id in self.meter_of:
            cells_m = self.meters.setdefault(table_id, {})
            if entry.HasField("meter_config"):
                cells_m[key] = _copy(entry.meter_config)
            else:   # INSERT and MODIFY alike: unset is the default config
                cells_m.pop(key, None)

    def entry_deleted(self, table_id: int, key: Hashable) -> None:
        self.counters.get(table_id, {}).pop(key, None)
        self.meters.get(table_id, {}).pop(key, None)

    def fill_read(self, table_id: int, key: Hashable, query: p4r.TableEntry,
                  entry: p4r.TableEntry) -> p4r.TableEntry:
        """``entry`` as a TableEntry Read returns it for ``query``: with the direct resources asked for."""
        want_counter = query.HasField("counter_data") and table_id in self.counter_of
        want_meter = query.HasField("meter_config") and table_id in self.meter_of
        want_colors = query.HasField("meter_counter_data") and table_id in self.meter_of
        if not (want_counter or want_meter or want_colors):
            return entry
        out = _copy(entry)
        if want_counter:
            out.counter_data.CopyFrom(counter_data(self.counter(table_id, key)))
        if want_meter:
            config = self.meters.get(table_id, {}).get(key)
            if config is not None:
                out.meter_config.CopyFrom(config)
        if want_colors:
            out.meter_counter_data.CopyFrom(zero_meter_counters())
        return out

    def counter(self, table_id: int, key: Hashable) -> tuple[int, int]:
        return self.counters.get(table_id, {}).get(key, (0, 0))

    # ----------------------------------------------------------------- DirectCounterEntry / DirectMeterEntry

    def require(self, kind: str, table_id: int, table_name: str) -> Any:
        """The table's direct counter (``kind`` "counter") or meter; INVALID_ARGUMENT when it has none."""
        found = (self.counter_of if kind == "counter" else self.meter_of).get(table_id)
        if found is None:
            raise fail(Code.INVALID_ARGUMENT, f"table {q(table_name)} has no direct {kind}")
        return found

    def write_counter(self, table_id: int, key: Hashable, msg: p4r.DirectCounterEntry) -> None:
        """MODIFY of a resolved DirectCounterEntry: ``data`` set writes the counts, unset changes nothing."""
        if msg.HasField("data"):
            self.counters.setdefault(table_id, {})[key] = check_counter_data(msg.data, "direct_counter_entry.data")

    def write_meter(self, table_id: int, key: Hashable, msg: p4r.DirectMeterEntry) -> None:
        """MODIFY of a resolved DirectMeterEntry: ``config`` set writes it, unset resets to the default."""
        meter = self.meter_of[table_id]
        if msg.HasField("counter_data"):
            check_meter_counter_data(msg.counter_data, "direct_meter_entry.counter_data")
        if msg.HasField("config"):
            config = check_meter_config(msg.config, meter.spec, "direct_meter_entry.config")
            self.meters.setdefault(table_id, {})[key] = config
        else:
            self.meters.get(table_id, {}).pop(key, None)

    def counter_entity(self, table_id: int, key: Hashable, handle: p4r.TableEntry) -> p4r.Entity:
        out = p4r.DirectCounterEntry(table_entry=handle, data=counter_data(self.counter(table_id, key)))
        return p4r.Entity(direct_counter_entry=out)

    def meter_entity(self, table_id: int, key: Hashable, handle: p4r.TableEntry,
                     query: p4r.DirectMeterEntry) -> p4r.Entity:
        out = p4r.DirectMeterEntry(table_entry=handle)
        config = self.meters.get(table_id, {}).get(key)
        if config is not None:
            out.config.CopyFrom(config)
        if query.HasField("counter_data"):
            out.counter_data.CopyFrom(zero_meter_counters())
        return p4r.Entity(direct_meter_entry=out)

    # ----------------------------------------------------------------- pipeline changes

    def reconcile(self, info: p4i.P4Info, kept_tables: set[int]) -> tuple["DirectStore", list[str]]:
        """The cells of the tables kept by RECONCILE_AND_COMMIT: a table's direct counter (meter) must
        still be there, with the same id (and meter type), when any of its cells holds a value."""
        new = DirectStore(info)
        problems: list[str] = []
        for table_id, cells in self.counters.items():
            if not cells:
                continue
            old_c, new_c = self.counter_of[table_id], new.counter_of.get(table_id)
            if table_id not in kept_tables or new_c is None or new_c.preamble.id != old_c.preamble.id:
                problems.append(f"direct counter {q(old_c.preamble.name)} (id {old_c.preamble.id}) holding "
                                "counts is gone or moved")
            else:
                new.counters[table_id] = dict(cells)
        for table_id, cells_m in self.meters.items():
            if not cells_m:
                continue
            old_m, new_m = self.meter_of[table_id], new.meter_of.get(table_id)
            if table_id not in kept_tables or new_m is None or new_m.preamble.id != old_m.preamble.id \
                    or new_m.spec.type != old_m.spec.type:
                problems.append(f"direct meter {q(old_m.preamble.name)} (id {old_m.preamble.id}) holding "
                                "configs is gone or changed")
            else:
                new.meters[table_id] = dict(cells_m)
        return new, problems


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out
