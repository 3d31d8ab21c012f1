"""The per-device state machine of the P4Runtime reference target.

Everything a P4Runtime switch remembers lives here: the forwarding pipeline
(P4Info, device config, cookie), a saved-but-not-committed config, the
:class:`State` every Write changes, and the client arbitration per role.

The state holds every entity kind of the spec, each in a store of its own module with
``write(update)`` / ``read(entity)`` (and ``copy()`` / ``reconcile(p4info)`` for pipeline
changes); :meth:`Device.write` and :meth:`Device.read` dispatch on ``Entity.entity``:

* table entries and default entries (this module, spec §9.1), with their direct
  counters and meters (``direct.py``: ``TableEntry.counter_data`` / ``meter_config`` /
  ``meter_counter_data``, ``DirectCounterEntry``, ``DirectMeterEntry``; §9.1 direct
  resources, §9.3.1, §9.4.1);
* action profile members and groups, and the member / group / one-shot actions of
  indirect tables (``profiles.py``, §9.2);
* indexed counters, meters and registers (``indexed.py``, §9.3.2, §9.4.2, §9.7);
* multicast groups and clone sessions (``pre.py``, §9.5);
* parser value sets (``value_sets.py``, §9.6).

``DigestEntry`` (§9.8) and extern entries are UNIMPLEMENTED.  VERIFY_AND_COMMIT and
COMMIT start from an empty state; RECONCILE_AND_COMMIT keeps the state of every kind
whose P4Info object keeps its id and shape, or fails INVALID_ARGUMENT, unchanged.
A ROLLBACK_ON_ERROR / DATAPLANE_ATOMIC Write applies to a copy of the whole state.

This module knows the protobuf messages but nothing about gRPC: every method is
synchronous, raises :class:`P4RuntimeError` (carrying a ``google.rpc.Code``)
when the request is refused, and leaves the state untouched in that case.  The
gRPC layer (``server.py``) turns those errors into call statuses and delivers
the arbitration updates returned by :meth:`Device.arbitrate` /
:meth:`Device.close_session` onto the right streams.

Bounds (attributes of each :class:`Device`, defaults from these constants):

* a table holds at most its P4Info ``size`` entries; a table of size 0 (the
  compiler gave none) holds :data:`DEFAULT_TABLE_SIZE` (1024), and all tables of
  a device together at most :data:`MAX_DEVICE_ENTRIES` (65,536).  An INSERT
  past either bound is refused with RESOURCE_EXHAUSTED (spec §12.3: "Table is
  full"), other updates of the batch proceeding as the atomicity says;
* a Write carries at most :data:`MAX_BATCH` (10,000) updates and a Read at most
  :data:`MAX_BATCH` entities: a larger request is refused as a whole with
  RESOURCE_EXHAUSTED before any update is tried (spec §12.3, an RPC-wide error
  has no per-update details); a Read returns at most :data:`MAX_READ_ENTITIES`
  (1,000,000) entities, a wildcard over indexed cells at most
  :data:`~kubep4.reftarget.indexed.MAX_READ_CELLS` per entity: more is RESOURCE_EXHAUSTED;
* enum values the P4Runtime protos do not define (``Update.type``,
  ``WriteRequest.atomicity``, ``SetForwardingPipelineConfigRequest.action``,
  ``GetForwardingPipelineConfigRequest.response_type``, P4Info match types and
  action scopes) are INVALID_ARGUMENT, as are negative table, profile, counter,
  meter, register and value set sizes, and implementation ids naming no profile.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from google.rpc import code_pb2, status_pb2

from kubep4.p4 import MatchKind, P4InfoIndex, p4i, p4r
from kubep4.reftarget.direct import DEFAULT_KEY, DirectStore
from kubep4.reftarget.errors import P4RuntimeError
from kubep4.reftarget.errors import fail as _fail
from kubep4.reftarget.errors import q as _q
from kubep4.reftarget.indexed import CounterStore, MeterStore, RegisterStore
from kubep4.reftarget.pre import PreStore
from kubep4.reftarget.profiles import ProfileStore, entry_ref
from kubep4.reftarget.value_sets import ValueSetStore
from kubep4.reftarget.values import KIND_NAMES as _KIND_NAMES
from kubep4.reftarget.values import PRIORITY_KINDS as _PRIORITY_KINDS
from kubep4.reftarget.values import EntryKey, check_action_spec, check_update_type, modify_only
from kubep4.reftarget.values import match_key as _match_key

__all__ = ["P4RuntimeError", "Session", "Device", "DeviceStats", "Pipeline", "election_id_of",
           "uint128", "update_error", "DEFAULT_TABLE_SIZE", "MAX_DEVICE_ENTRIES", "MAX_BATCH",
           "MAX_READ_ENTITIES", "State"]

Code = code_pb2
SetAction = p4r.SetForwardingPipelineConfigRequest.Action
ResponseType = p4r.GetForwardingPipelineConfigRequest.ResponseType
UpdateType = p4r.Update.Type
Atomicity = p4r.WriteRequest.Atomicity
Scope = p4i.ActionRef.Scope

DEFAULT_TABLE_SIZE = 1024      # entries of a table whose P4Info size is 0
MAX_DEVICE_ENTRIES = 65_536    # entries of all tables of a device together
MAX_BATCH = 10_000             # updates of a Write, entities of a Read
MAX_READ_ENTITIES = 1_000_000  # entities one Read returns



def election_id_of(msg: p4r.Uint128) -> int:
    return (msg.high << 64) | msg.low


def uint128(value: int) -> p4r.Uint128:
    return p4r.Uint128(high=(value >> 64) & 0xFFFFFFFFFFFFFFFF, low=value & 0xFFFFFFFFFFFFFFFF)


def update_error(err: P4RuntimeError | None) -> p4r.Error:
    """The ``p4.v1.Error`` reported for one update of a Write (OK when ``err`` is None)."""
    if err is None:
        return p4r.Error(canonical_code=Code.OK)
    return p4r.Error(canonical_code=err.code, message=err.message)


# --------------------------------------------------------------------------- sessions


_session_ids = itertools.count(1)


@dataclass(eq=False)
class Session:
    """One StreamChannel of one client. Identity is the object itself."""

    id: int = field(default_factory=lambda: next(_session_ids))
    role: str | None = None
    election_id: int | None = None
    # Whether the client put a Role message in its arbitration update (echoed back).
    role_set: bool = False

    @property
    def arbitrated(self) -> bool:
        return self.election_id is not None


Notification = tuple[Session, p4r.MasterArbitrationUpdate]


# --------------------------------------------------------------------------- stats


@dataclass
class DeviceStats:
    """Counters of what the device actually did (not exported over P4Runtime)."""

    pipeline_commits: int = 0       # VERIFY_AND_COMMIT, COMMIT, RECONCILE_AND_COMMIT that succeeded
    pipeline_saves: int = 0         # VERIFY_AND_SAVE that succeeded
    pipeline_verifies: int = 0      # VERIFY that succeeded
    reconciles: int = 0             # RECONCILE_AND_COMMIT that succeeded (also counted in commits)
    write_requests: int = 0         # Write RPCs that reached the table store
    writes_applied: int = 0         # individual updates applied (insert + modify + delete)
    writes_failed: int = 0          # individual updates refused
    inserts: int = 0
    modifies: int = 0
    deletes: int = 0

    def snapshot(self) -> dict[str, int]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class _TableInfo:
    info: p4i.Table
    fields: dict[int, p4i.MatchField]
    action_scopes: dict[int, int]   # action id -> ActionRef.Scope
    needs_priority: bool
    size: int                       # entries it holds at most

    @property
    def id(self) -> int:
        return self.info.preamble.id

    @property
    def name(self) -> str:
        """The table's name, shortened for messages."""
        return _q(self.info.preamble.name)


class Pipeline:
    """A committed forwarding pipeline with the lookups the table store needs."""

    def __init__(self, config: p4r.ForwardingPipelineConfig, index: P4InfoIndex,
                 default_table_size: int = DEFAULT_TABLE_SIZE):
        self.config = config
        self.index = index
        self.tables: dict[int, _TableInfo] = {}
        for t in config.p4info.tables:
            self.tables[t.preamble.id] = _TableInfo(
                info=t,
                fields={m.id: m for m in t.match_fields},
                action_scopes={r.id: r.scope for r in t.action_refs},
                needs_priority=any(m.match_type in _PRIORITY_KINDS for m in t.match_fields),
                size=t.size or default_table_size,
            )
        self.action_params: dict[int, dict[int, p4i.Action.Param]] = {
            a.preamble.id: {p.id: p for p in a.params} for a in config.p4info.actions
        }

    @property
    def cookie(self) -> int | None:
        return self.config.cookie.cookie if self.config.HasField("cookie") else None


def validate_config(config: p4r.ForwardingPipelineConfig) -> P4InfoIndex:
    """Check a ForwardingPipelineConfig; raise INVALID_ARGUMENT when it cannot be used."""
    if not config.HasField("p4info"):
        raise _fail(Code.INVALID_ARGUMENT, "the ForwardingPipelineConfig has no p4info")
    index = P4InfoIndex(config.p4info)
    problems = list(index.problems())
    for i, t in enumerate(config.p4info.tables):
        for j, m in enumerate(t.match_fields):
            if m.match_type not in _KIND_NAMES and not m.other_match_type:
                what = "has no match type" if m.match_type == MatchKind.UNSPECIFIED else \
                    f"has an unknown match type {m.match_type}"
                problems.append((f"tables[{i}].match_fields[{j}].match_type",
                                 f"match field {_q(m.name)} of {_q(t.preamble.name)} {what}"))
            if m.id == 0:
                problems.append((f"tables[{i}].match_fields[{j}].id", f"match field {_q(m.name)} has no id"))
        scopes = [r.id for r in t.action_refs]
        if len(scopes) != len(set(scopes)):
            problems.append((f"tables[{i}].action_refs", f"duplicate action refs in {_q(t.preamble.name)}"))
        for j, r in enumerate(t.action_refs):
            if r.scope not in Scope.values():
                problems.append((f"tables[{i}].action_refs[{j}].scope", f"unknown action scope {r.scope}"))
        if t.size < 0:
            problems.append((f"tables[{i}].size", f"negative size {t.size}"))
    profile_ids = {p.preamble.id for p in config.p4info.action_profiles}
    table_ids = {t.preamble.id for t in config.p4info.tables}
    for i, t in enumerate(config.p4info.tables):
        if t.implementation_id and t.implementation_id not in profile_ids:
            problems.append((f"tables[{i}].implementation_id",
                             f"table {_q(t.preamble.name)} names unknown action profile {t.implementation_id}"))
    for i, p in enumerate(config.p4info.action_profiles):
        for j, tid in enumerate(p.table_ids):
            if tid not in table_ids:
                problems.append((f"action_profiles[{i}].table_ids[{j}]", f"unknown table id {tid}"))
        if p.size < 0 or p.max_group_size < 0:
            problems.append((f"action_profiles[{i}]", f"negative size in {_q(p.preamble.name)}"))
    for group in ("counters", "meters", "registers", "value_sets"):
        for i, obj in enumerate(getattr(config.p4info, group)):
            if obj.size < 0:
                problems.append((f"{group}[{i}].size", f"negative size {obj.size}"))
    for i, a in enumerate(config.p4info.actions):
        pids = [p.id for p in a.params]
        if len(pids) != len(set(pids)) or 0 in pids:
            problems.append((f"actions[{i}].params", f"bad or duplicate param ids in {_q(a.preamble.name)}"))
    if problems:
        shown = "; ".join(f"{path}: {desc}" for path, desc in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise _fail(Code.INVALID_ARGUMENT, f"invalid P4Info: {shown}{more}")
    return index


# --------------------------------------------------------------------------- value checks


def _check_priority(table: _TableInfo, priority: int) -> None:
    if table.needs_priority:
        if priority <= 0:
            raise _fail(Code.INVALID_ARGUMENT, f"table {table.name} has ternary/range/optional match "
                                               "fields: priority must be > 0")
    elif priority != 0:
        raise _fail(Code.INVALID_ARGUMENT, f"table {table.name} takes no priority (got {priority})")


# --------------------------------------------------------------------------- the state


# Entity kinds whose whole state is one store of :class:`State`: entity field -> State attribute.
_STORE_OF = {
    "counter_entry": "counters",
    "meter_entry": "meters",
    "register_entry": "registers",
    "packet_replication_engine_entry": "pre",
    "value_set_entry": "value_sets",
}


@dataclass
class State:
    """Everything Writes have changed on a device.  A ROLLBACK_ON_ERROR Write works on a
    :meth:`copy` and keeps it only when every update applied."""

    # the stores besides the tables, each with copy() and reconcile()
    STORES = ("direct", "counters", "meters", "registers", "profiles", "pre", "value_sets")

    # table id -> entry key -> the TableEntry as written (direct-resource fields cleared)
    entries: dict[int, dict[EntryKey, p4r.TableEntry]] = field(default_factory=dict)
    # table id -> the default-action entry set by MODIFY (absent: the P4Info initial default)
    defaults: dict[int, p4r.TableEntry] = field(default_factory=dict)
    direct: DirectStore = field(default_factory=DirectStore)
    counters: CounterStore = field(default_factory=CounterStore)
    meters: MeterStore = field(default_factory=MeterStore)
    registers: RegisterStore = field(default_factory=RegisterStore)
    profiles: ProfileStore = field(default_factory=ProfileStore)
    pre: PreStore = field(default_factory=PreStore)
    value_sets: ValueSetStore = field(default_factory=ValueSetStore)
    tally: int = 0   # entries of all tables, kept during a Write

    @classmethod
    def empty(cls, info: p4i.P4Info) -> "State":
        return cls(direct=DirectStore(info), counters=CounterStore(info), meters=MeterStore(info),
                   registers=RegisterStore(info), profiles=ProfileStore(info), pre=PreStore(info),
                   value_sets=ValueSetStore(info))

    def copy(self) -> "State":
        out = State(entries={tid: dict(es) for tid, es in self.entries.items()},
                    defaults=dict(self.defaults), tally=self.tally)
        for name in self.STORES:
            setattr(out, name, getattr(self, name).copy())
        return out


def _stored(entry: p4r.TableEntry) -> p4r.TableEntry:
    """A TableEntry as the table store keeps it: the direct resources live in the DirectStore."""
    out = _copy(entry)
    for name in ("counter_data", "meter_config", "meter_counter_data"):
        out.ClearField(name)
    return out


# --------------------------------------------------------------------------- the device


@dataclass
class _RoleState:
    sessions: list[Session] = field(default_factory=list)

    def primary(self) -> Session | None:
        return max(self.sessions, key=lambda s: s.election_id or 0, default=None)


class Device:
    """One P4Runtime device: pipeline, saved config, tables and arbitration."""

    def __init__(self, device_id: int, default_table_size: int = DEFAULT_TABLE_SIZE,
                 max_entries: int = MAX_DEVICE_ENTRIES, max_batch: int = MAX_BATCH,
                 unimplemented: frozenset[str] = frozenset(), wedge_on_reconcile: bool = False):
        self.device_id = device_id
        # stand in for BMv2 through PI: RECONCILE_AND_COMMIT of a program with an indexed counter or
        # meter fails (PI replays the saved counter entries as INSERTs) and wedges the device: the
        # cookie reads the new value and every later SetForwardingPipelineConfig fails until restart
        self.wedge_on_reconcile = wedge_on_reconcile
        self.wedged = False
        # entity kinds (Entity oneof names) this device refuses to write or read with UNIMPLEMENTED,
        # to stand in for a switch that lacks them (a real BMv2 has no register writes or reads)
        self.unimplemented = frozenset(unimplemented)
        self.default_table_size = default_table_size
        self.max_entries = max_entries
        self.max_batch = max_batch
        self.pipeline: Pipeline | None = None
        self.saved: tuple[p4r.ForwardingPipelineConfig, P4InfoIndex] | None = None
        # while a saved config awaits COMMIT: the committed pipeline and its state, which the data
        # plane still runs (Reads and Writes address the saved config, spec §7.3)
        self._running: tuple[Pipeline | None, State] | None = None
        # everything written through Write: tables, direct resources and every other entity kind
        self.state = State()
        self.stats = DeviceStats()
        self._roles: dict[str, _RoleState] = {}

    # ----------------------------------------------------------------- arbitration

    def arbitrate(self, session: Session, update: p4r.MasterArbitrationUpdate) -> list[Notification]:
        """Handle a MasterArbitrationUpdate received on ``session``.

        Returns the arbitration updates to send, as (session, message) pairs: the
        sender always gets one; every stream of the role gets one when the primary
        (or the primary's election id) changes.
        """
        if update.device_id != self.device_id:
            raise _fail(Code.NOT_FOUND, f"unknown device_id {update.device_id}")
        role = update.role.name if update.HasField("role") else ""
        if session.role is not None and role != session.role:
            raise _fail(Code.INVALID_ARGUMENT, f"a stream cannot change its role "
                                               f"(from {session.role!r} to {role!r})")
        eid = election_id_of(update.election_id)
        state = self._roles.get(role)
        if state is not None:
            for other in state.sessions:
                if other is not session and other.election_id == eid:
                    raise _fail(Code.INVALID_ARGUMENT,
                                f"election_id {eid} is already used by another client of role {role!r}")
        else:
            state = self._roles[role] = _RoleState()
        old_primary = state.primary()
        old_primary_id = old_primary.election_id if old_primary else None
        session.role = role
        session.role_set = update.HasField("role")
        session.election_id = eid
        if session not in state.sessions:
            state.sessions.append(session)
        new_primary = state.primary()
        assert new_primary is not None
        if new_primary is not old_primary or new_primary.election_id != old_primary_id:
            return [(s, self._arbitration_message(s, new_primary)) for s in state.sessions]
        return [(session, self._arbitration_message(session, new_primary))]

    def close_session(self, session: Session) -> list[Notification]:
        """Forget a closed stream; announce the new primary to the others if it was the primary."""
        if session.role is None:
            return []
        state = self._roles.get(session.role)
        if state is None or session not in state.sessions:
            return []
        was_primary = state.primary() is session
        state.sessions.remove(session)
        if not state.sessions:
            del self._roles[session.role]
            return []
        if not was_primary:
            return []
        new_primary = state.primary()
        assert new_primary is not None
        return [(s, self._arbitration_message(s, new_primary)) for s in state.sessions]

    def _arbitration_message(self, to: Session, primary: Session) -> p4r.MasterArbitrationUpdate:
        msg = p4r.MasterArbitrationUpdate(device_id=self.device_id,
                                          election_id=uint128(primary.election_id or 0))
        if to.role_set or to.role:
            msg.role.name = to.role or ""
        if to is primary:
            msg.status.CopyFrom(status_pb2.Status(code=Code.OK, message="primary"))
        else:
            msg.status.CopyFrom(status_pb2.Status(code=Code.ALREADY_EXISTS,
                                                  message="a primary is connected; this client is a backup"))
        return msg

    def primary_election_id(self, role: str = "") -> int | None:
        state = self._roles.get(role)
        primary = state.primary() if state else None
        return primary.election_id if primary else None

    def sessions(self, role: str = "") -> list[Session]:
        state = self._roles.get(role)
        return list(state.sessions) if state else []

    def check_primary(self, role: str, election_id: p4r.Uint128) -> None:
        """PERMISSION_DENIED unless ``election_id`` is the live primary's of ``role``."""
        primary = self.primary_election_id(role)
        if primary is None:
            raise _fail(Code.PERMISSION_DENIED,
                        f"no client holds a stream for role {role!r} on device {self.device_id}")
        eid = election_id_of(election_id)
        if eid != primary:
            raise _fail(Code.PERMISSION_DENIED,
                        f"election_id {eid} is not the primary's ({primary}) for role {role!r}")

    # ----------------------------------------------------------------- pipeline

    def set_pipeline(self, action: int, config: p4r.ForwardingPipelineConfig) -> None:
        """Apply a SetForwardingPipelineConfig action (arbitration is checked by the caller).

        VERIFY_AND_SAVE (spec §7.3): "any subsequent Read / Write requests must refer to fields in
        the new config": they address the saved config, starting empty, while the committed one
        keeps running (GetForwardingPipelineConfig answers it); COMMIT realises the saved config
        with what was written since. Another commit abandons a pending save."""
        if self.wedged:
            raise _fail(Code.UNKNOWN, "Error in first phase of device update")
        if action == SetAction.VERIFY:
            validate_config(config)
            self.stats.pipeline_verifies += 1
        elif action == SetAction.VERIFY_AND_SAVE:
            index = validate_config(config)
            if self._running is None:
                self._running = (self.pipeline, self.state)
            self.saved = (_copy(config), index)
            self.pipeline = Pipeline(_copy(config), index, self.default_table_size)
            self.state = State.empty(config.p4info)
            self.stats.pipeline_saves += 1
        elif action == SetAction.VERIFY_AND_COMMIT:
            index = validate_config(config)
            self._abandon_save()
            self._commit(_copy(config), index)
        elif action == SetAction.COMMIT:
            if self.saved is None:
                raise _fail(Code.FAILED_PRECONDITION, "COMMIT: no saved forwarding pipeline config "
                                                      "(use VERIFY_AND_SAVE first)")
            self._running = self.saved = None  # the saved config, with what was written since
            self.stats.pipeline_commits += 1
        elif action == SetAction.RECONCILE_AND_COMMIT:
            index = validate_config(config)
            self._abandon_save()
            new = Pipeline(_copy(config), index, self.default_table_size)
            if self.wedge_on_reconcile and self.pipeline is not None and (
                    config.p4info.counters or config.p4info.meters):
                self.wedged = True
                self.pipeline = Pipeline(_copy(config), index, self.default_table_size)
                self.state = State.empty(config.p4info)
                raise _fail(Code.UNKNOWN, "Error when reconciling config")
            self.state = self._reconcile(new)
            self.pipeline = new
            self.saved = None
            self.stats.pipeline_commits += 1
            self.stats.reconciles += 1
        else:
            raise _fail(Code.INVALID_ARGUMENT, f"unsupported SetForwardingPipelineConfig action {action}")

    def _abandon_save(self) -> None:
        if self._running is not None:
            self.pipeline, self.state = self._running
            self._running = self.saved = None

    def _commit(self, config: p4r.ForwardingPipelineConfig, index: P4InfoIndex) -> None:
        """Install a pipeline with an empty state: VERIFY_AND_COMMIT and COMMIT forget every entity
        written (spec §7.3: the new config starts from a clean state)."""
        self.pipeline = Pipeline(config, index, self.default_table_size)
        self.state = State.empty(config.p4info)
        self.saved = None
        self.stats.pipeline_commits += 1

    def _reconcile(self, new: Pipeline) -> "State":
        """The state kept by RECONCILE_AND_COMMIT (spec §7.3): every entity written must fit ``new``,
        its object keeping its id and shape; INVALID_ARGUMENT naming what does not, the device unchanged."""
        info = new.config.p4info
        if self.pipeline is None:
            return State.empty(info)
        old, st = self.pipeline, self.state
        problems: list[str] = []
        for table_id in sorted(set(st.entries) | set(st.defaults)):
            entries = st.entries.get(table_id, {})
            default = st.defaults.get(table_id)
            if not entries and default is None:
                continue
            old_t = old.tables[table_id]
            new_t = new.tables.get(table_id)
            count = len(entries) + (default is not None)
            if new_t is None:
                problems.append(f"table {old_t.name} (id {table_id}) holding {count} entries is gone")
                continue
            old_sig = sorted((m.id, m.bitwidth, m.match_type, m.other_match_type)
                             for m in old_t.fields.values())
            new_sig = sorted((m.id, m.bitwidth, m.match_type, m.other_match_type)
                             for m in new_t.fields.values())
            if old_sig != new_sig:
                problems.append(f"table {old_t.name} (id {table_id}) changed its match fields")
                continue
            if old_t.info.implementation_id != new_t.info.implementation_id:
                problems.append(f"table {old_t.name} (id {table_id}) changed its implementation")
                continue
            for entry in itertools.chain(entries.values(), [default] if default is not None else []):
                problem = self._action_survives(old, new, old_t, new_t, entry)
                if problem:
                    problems.append(problem)
                    break
        kept_tables = {tid for tid in old.tables if tid in new.tables}
        out = State(entries={tid: dict(es) for tid, es in st.entries.items() if es},
                    defaults=dict(st.defaults))
        for name in State.STORES:
            if name == "direct":
                store, more = st.direct.reconcile(info, kept_tables)
            else:
                store, more = getattr(st, name).reconcile(info)
            setattr(out, name, store)
            problems.extend(more)
        if problems:
            shown = "; ".join(problems[:10]) + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
            raise _fail(Code.INVALID_ARGUMENT, "RECONCILE_AND_COMMIT cannot keep the installed entities: " + shown)
        return out

    @staticmethod
    def _action_survives(old: Pipeline, new: Pipeline, old_t: _TableInfo, new_t: _TableInfo,
                         entry: p4r.TableEntry) -> str | None:
        """Why ``entry``'s action no longer fits ``new`` (None when it does)."""
        kind = entry.action.WhichOneof("type")
        if kind == "action":
            actions = [entry.action.action]
        elif kind == "action_profile_action_set":
            actions = [a.action for a in entry.action.action_profile_action_set.action_profile_actions]
        else:   # a member or group reference: the profile's own reconcile checks the actions
            return None
        for action in actions:
            aid = action.action_id
            if aid not in new_t.action_scopes:
                return f"action id {aid} used by entries of {old_t.name} is no longer an action of the table"
            old_params = sorted((p.id, p.bitwidth) for p in old.action_params[aid].values())
            new_params = sorted((p.id, p.bitwidth) for p in new.action_params.get(aid, {}).values())
            if old_params != new_params:
                return f"action id {aid} used by entries of {old_t.name} changed its params"
        return None

    def get_pipeline(self, response_type: int) -> p4r.ForwardingPipelineConfig:
        """The committed pipeline (a saved one awaiting COMMIT is not running yet)."""
        running = self._running[0] if self._running is not None else self.pipeline
        if running is None:
            raise _fail(Code.FAILED_PRECONDITION, f"no forwarding pipeline on device {self.device_id}")
        cfg = running.config
        out = p4r.ForwardingPipelineConfig()
        if cfg.HasField("cookie"):
            out.cookie.CopyFrom(cfg.cookie)
        if response_type == ResponseType.ALL:
            out.p4info.CopyFrom(cfg.p4info)
            out.p4_device_config = cfg.p4_device_config
        elif response_type == ResponseType.P4INFO_AND_COOKIE:
            out.p4info.CopyFrom(cfg.p4info)
        elif response_type == ResponseType.DEVICE_CONFIG_AND_COOKIE:
            out.p4_device_config = cfg.p4_device_config
        elif response_type != ResponseType.COOKIE_ONLY:
            raise _fail(Code.INVALID_ARGUMENT, f"unknown response_type {response_type}")
        return out

    # ----------------------------------------------------------------- write

    def write(self, updates: Iterable[p4r.Update],
              atomicity: int = Atomicity.CONTINUE_ON_ERROR) -> list[P4RuntimeError | None]:
        """Apply the updates of a Write; return one error (or None when applied) per update.

        CONTINUE_ON_ERROR applies each update independently.  ROLLBACK_ON_ERROR and
        DATAPLANE_ATOMIC apply all or nothing, for every entity kind alike; when one fails the
        others report ABORTED.
        """
        pipeline = self._require_pipeline()
        updates = list(updates)
        self._check_batch(len(updates), "Write", "updates")
        self.stats.write_requests += 1
        if atomicity == Atomicity.CONTINUE_ON_ERROR:
            self.state.tally = self.entry_count()
            results = [self._try_update(pipeline, u, self.state) for u in updates]
            self._count(updates, results)
            return results
        if atomicity not in (Atomicity.ROLLBACK_ON_ERROR, Atomicity.DATAPLANE_ATOMIC):
            raise _fail(Code.INVALID_ARGUMENT, f"unknown atomicity {atomicity}")
        work = self.state.copy()
        work.tally = self.entry_count()
        results = [self._try_update(pipeline, u, work) for u in updates]
        if any(r is not None for r in results):
            aborted = _fail(Code.ABORTED, "not applied: another update of the batch failed")
            results = [r if r is not None else aborted for r in results]
            self.stats.writes_failed += len(updates)
            return results
        self.state = work
        self._count(updates, results)
        return results

    def _count(self, updates: list[p4r.Update], results: list[P4RuntimeError | None]) -> None:
        for u, r in zip(updates, results):
            if r is not None:
                self.stats.writes_failed += 1
                continue
            self.stats.writes_applied += 1
            if u.type == UpdateType.INSERT:
                self.stats.inserts += 1
            elif u.type == UpdateType.MODIFY:
                self.stats.modifies += 1
            else:
                self.stats.deletes += 1

    def _try_update(self, pipeline: Pipeline, update: p4r.Update, st: "State") -> P4RuntimeError | None:
        try:
            self._apply_update(pipeline, update, st)
        except P4RuntimeError as e:
            return e
        return None

    def _apply_update(self, pipeline: Pipeline, update: p4r.Update, st: "State") -> None:
        """Apply one update to ``st``; a refused update leaves ``st`` as it was."""
        which = update.entity.WhichOneof("entity")
        if which is None:
            raise _fail(Code.INVALID_ARGUMENT, "update has no entity")
        if which in self.unimplemented:
            raise _fail(Code.UNIMPLEMENTED, f"writing {which} entities is not supported by this device")
        if which == "table_entry":
            self._write_table_entry(pipeline, update, st)
        elif which in ("direct_counter_entry", "direct_meter_entry"):
            self._write_direct(pipeline, update, which, st)
        elif which == "action_profile_member":
            st.profiles.write_member(update)
        elif which == "action_profile_group":
            st.profiles.write_group(update)
        elif which in _STORE_OF:
            getattr(st, _STORE_OF[which]).write(update)
        else:
            raise _fail(Code.UNIMPLEMENTED, f"writing {which} entities is not supported")

    def _write_table_entry(self, pipeline: Pipeline, update: p4r.Update, st: "State") -> None:
        check_update_type(update)
        entry = update.entity.table_entry
        table = self._table(pipeline, entry.table_id)
        if entry.is_default_action:
            self._write_default(pipeline, table, update, st)
            return
        key = (_match_key(table, entry.match), entry.priority)
        _check_priority(table, entry.priority)
        store = st.entries.get(table.id, {})
        impl = table.info.implementation_id
        old = store.get(key)
        old_ref = entry_ref(old.action) if impl and old is not None else None
        if update.type == UpdateType.DELETE:
            if old is None:
                raise _fail(Code.NOT_FOUND, f"no such entry in table {table.name}")
            del store[key]
            st.tally -= 1
            if not store:
                del st.entries[table.id]
            st.direct.entry_deleted(table.id, key)
            if old_ref is not None:
                st.profiles.refer(impl, old_ref, -1)
            return
        new_ref = None
        if impl:
            def check(action: p4r.Action, what: str) -> None:
                self._check_direct_action(pipeline, table, action, False, what)
            new_ref = st.profiles.check_entry_action(impl, table.name, entry.action, check,
                                                     old_ref if update.type == UpdateType.MODIFY else None)
        else:
            self._check_action(pipeline, table, entry, default=False)
        st.direct.check_entry(table.id, table.name, entry)
        if update.type == UpdateType.INSERT:
            if key in store:
                raise _fail(Code.ALREADY_EXISTS, f"an entry with this match and priority already exists "
                                                 f"in table {table.name}")
            if len(store) >= table.size:
                bound = f"{table.size} entries" + ("" if table.info.size else ", the default bound of size 0")
                raise _fail(Code.RESOURCE_EXHAUSTED, f"table {table.name} is full ({bound})")
            if st.tally >= self.max_entries:
                raise _fail(Code.RESOURCE_EXHAUSTED, f"the device is full ({self.max_entries} entries "
                                                     "in all tables)")
            st.tally += 1
        elif key not in store:
            raise _fail(Code.NOT_FOUND, f"no such entry in table {table.name}")
        st.entries.setdefault(table.id, store)[key] = _stored(entry)
        st.direct.entry_written(table.id, key, entry, insert=update.type == UpdateType.INSERT)
        if new_ref is not None:
            if old_ref is not None:
                st.profiles.refer(impl, old_ref, -1)
            st.profiles.refer(impl, new_ref, +1)

    def _write_default(self, pipeline: Pipeline, table: _TableInfo, update: p4r.Update, st: "State") -> None:
        """MODIFY of a table's default entry (spec §9.1.4): with an action it replaces the default
        action, without one it resets it to the P4Info's initial default action; INSERT and DELETE are
        INVALID_ARGUMENT, a const default action PERMISSION_DENIED."""
        entry = update.entity.table_entry
        if update.type != UpdateType.MODIFY:
            raise _fail(Code.INVALID_ARGUMENT, "a default action entry can only be MODIFY'd")
        if len(entry.match) or entry.priority:
            raise _fail(Code.INVALID_ARGUMENT, "a default action entry has no match and no priority")
        if table.info.const_default_action_id:
            raise _fail(Code.PERMISSION_DENIED, f"the default action of table {table.name} is const")
        if entry.HasField("action"):
            self._check_action(pipeline, table, entry, default=True)
        st.direct.check_entry(table.id, table.name, entry)
        if entry.HasField("action"):
            st.defaults[table.id] = _stored(entry)
        else:
            st.defaults.pop(table.id, None)
        st.direct.entry_written(table.id, DEFAULT_KEY, entry, insert=False)

    def _check_action(self, pipeline: Pipeline, table: _TableInfo, entry: p4r.TableEntry,
                      default: bool) -> None:
        kind = entry.action.WhichOneof("type")
        if kind is None:
            raise _fail(Code.INVALID_ARGUMENT, f"an entry of table {table.name} needs an action")
        if kind != "action":
            if default:
                raise _fail(Code.INVALID_ARGUMENT, f"the default entry of table {table.name} takes an "
                                                   f"action, not a {kind}")
            raise _fail(Code.INVALID_ARGUMENT, f"table {table.name} has no action profile: its entries take "
                                               f"an action, not a {kind}")
        self._check_direct_action(pipeline, table, entry.action.action, default)

    def _check_direct_action(self, pipeline: Pipeline, table: _TableInfo, action: p4r.Action,
                             default: bool, what: str = "action") -> None:
        scope = table.action_scopes.get(action.action_id)
        if scope is None:
            raise _fail(Code.INVALID_ARGUMENT,
                        f"action id {action.action_id} is not an action of table {table.name}")
        if default and scope == Scope.TABLE_ONLY:
            raise _fail(Code.INVALID_ARGUMENT, f"action id {action.action_id} cannot be a default action")
        if not default and scope == Scope.DEFAULT_ONLY:
            raise _fail(Code.INVALID_ARGUMENT, f"action id {action.action_id} is a default-only action")
        check_action_spec(pipeline.action_params, action, what)

    def _write_direct(self, pipeline: Pipeline, update: p4r.Update, which: str, st: "State") -> None:
        """MODIFY of a DirectCounterEntry / DirectMeterEntry (spec §9.3.1, §9.4.1): its table entry
        (the default entry with ``is_default_action``) must be installed, else NOT_FOUND."""
        kind = "counter" if which == "direct_counter_entry" else "meter"
        msg = getattr(update.entity, which)
        modify_only(update, f"a direct {kind} entry")
        te = msg.table_entry
        table = self._table(pipeline, te.table_id)
        st.direct.require(kind, table.id, table.info.preamble.name)
        key = self._installed_key(table, te, st)
        if kind == "counter":
            st.direct.write_counter(table.id, key, msg)
        else:
            st.direct.write_meter(table.id, key, msg)

    def _installed_key(self, table: _TableInfo, te: p4r.TableEntry, st: "State"):
        """The key of the installed entry ``te`` names (DEFAULT_KEY for the default entry); NOT_FOUND."""
        if te.is_default_action:
            if len(te.match) or te.priority:
                raise _fail(Code.INVALID_ARGUMENT, "a default entry has no match and no priority")
            return DEFAULT_KEY
        key = (_match_key(table, te.match, "table_entry.match"), te.priority)
        if key not in st.entries.get(table.id, {}):
            raise _fail(Code.NOT_FOUND, f"no such entry in table {table.name}")
        return key

    @staticmethod
    def _table(pipeline: Pipeline, table_id: int) -> _TableInfo:
        if table_id == 0:
            raise _fail(Code.INVALID_ARGUMENT, "table_id 0 is not a table (wildcards are for reads)")
        table = pipeline.tables.get(table_id)
        if table is None:
            raise _fail(Code.INVALID_ARGUMENT, f"unknown table id {table_id}")
        return table

    # ----------------------------------------------------------------- read

    def read(self, entities: Iterable[p4r.Entity]) -> Iterator[p4r.Entity]:
        """Resolve a Read request. Validation happens before the first entity is yielded."""
        pipeline = self._require_pipeline()
        entities = list(entities)
        self._check_batch(len(entities), "Read", "entities")
        plans: list[list[p4r.Entity]] = []
        total = 0
        for e in entities:
            plans.append(self._plan_read(pipeline, e))
            total += len(plans[-1])
            if total > MAX_READ_ENTITIES:
                raise _fail(Code.RESOURCE_EXHAUSTED, f"this Read would return more than {MAX_READ_ENTITIES} "
                                                     "entities: split it")
        return itertools.chain.from_iterable(plans)

    def _plan_read(self, pipeline: Pipeline, entity: p4r.Entity) -> list[p4r.Entity]:
        which = entity.WhichOneof("entity")
        if which is None:
            raise _fail(Code.INVALID_ARGUMENT, "a read entity names no entity kind")
        if which in self.unimplemented:
            raise _fail(Code.UNIMPLEMENTED, f"reading {which} entities is not supported by this device")
        if which == "table_entry":
            return self._read_table(pipeline, entity.table_entry)
        if which in ("direct_counter_entry", "direct_meter_entry"):
            return self._read_direct(pipeline, which, getattr(entity, which))
        if which in ("action_profile_member", "action_profile_group"):
            return self.state.profiles.read(entity)
        if which in _STORE_OF:
            return getattr(self.state, _STORE_OF[which]).read(entity)
        raise _fail(Code.UNIMPLEMENTED, f"reading {which} entities is not supported")

    def _read_table(self, pipeline: Pipeline, query: p4r.TableEntry) -> list[p4r.Entity]:
        """TableEntry reads (spec §11.1): table_id 0 reads every entry of every table (never default
        entries), a table without match every entry of it (those of ``priority`` if given), a match
        that one entry; ``is_default_action`` the default entry, on every table.  Direct resources come
        back when the query sets their fields (spec §9.1.x)."""
        st = self.state
        direct = st.direct
        if query.table_id == 0:
            if len(query.match) or query.is_default_action:
                raise _fail(Code.INVALID_ARGUMENT, "a wildcard read (table_id 0) takes no match")
            return [p4r.Entity(table_entry=direct.fill_read(tid, k, query, e))
                    for tid in sorted(st.entries) for k, e in st.entries[tid].items()]
        table = pipeline.tables.get(query.table_id)
        if table is None:
            raise _fail(Code.INVALID_ARGUMENT, f"unknown table id {query.table_id}")
        if query.is_default_action:
            entry = self.default_entry(pipeline, table)
            return [p4r.Entity(table_entry=direct.fill_read(table.id, DEFAULT_KEY, query, entry))]
        store = st.entries.get(table.id, {})
        if len(query.match):
            key = (_match_key(table, query.match, "table_entry.match"), query.priority)
            found = store.get(key)
            return [p4r.Entity(table_entry=direct.fill_read(table.id, key, query, found))] \
                if found is not None else []
        return [p4r.Entity(table_entry=direct.fill_read(table.id, k, query, e)) for k, e in store.items()
                if not query.priority or e.priority == query.priority]

    def _read_direct(self, pipeline: Pipeline, which: str, msg) -> list[p4r.Entity]:
        """DirectCounterEntry / DirectMeterEntry reads (spec §9.3.1, §9.4.1): an installed entry's match
        (NOT_FOUND when none), the default entry, every entry of a table (no match), or every entry
        of every table with that direct resource (table_id 0).  A real BMv2 refuses the wildcard forms;
        this target implements them as the spec's wildcard rules say."""
        kind = "counter" if which == "direct_counter_entry" else "meter"
        st = self.state
        direct = st.direct
        te = msg.table_entry

        def one(tid: int, key, stored: p4r.TableEntry | None) -> p4r.Entity:
            handle = p4r.TableEntry(table_id=tid)
            if stored is None:
                handle.is_default_action = True
            else:
                handle.match.extend(stored.match)
                handle.priority = stored.priority
            if kind == "counter":
                return direct.counter_entity(tid, key, handle)
            return direct.meter_entity(tid, key, handle, msg)

        if te.table_id == 0:
            if len(te.match) or te.is_default_action or te.priority:
                raise _fail(Code.INVALID_ARGUMENT, f"a wildcard direct {kind} read (table_id 0) takes no match")
            owners = direct.counter_of if kind == "counter" else direct.meter_of
            return [one(tid, k, e) for tid in sorted(owners) if tid in pipeline.tables
                    for k, e in st.entries.get(tid, {}).items()]
        table = pipeline.tables.get(te.table_id)
        if table is None:
            raise _fail(Code.INVALID_ARGUMENT, f"unknown table id {te.table_id}")
        direct.require(kind, table.id, table.info.preamble.name)
        if te.is_default_action or len(te.match):
            key = self._installed_key(table, te, st)
            return [one(table.id, key, None if key == DEFAULT_KEY else st.entries[table.id][key])]
        return [one(table.id, k, e) for k, e in st.entries.get(table.id, {}).items()
                if not te.priority or e.priority == te.priority]

    def default_entry(self, pipeline: Pipeline, table: _TableInfo) -> p4r.TableEntry:
        entry = self.state.defaults.get(table.id)
        if entry is not None:
            return entry
        out = p4r.TableEntry(table_id=table.id, is_default_action=True)
        init = table.info.initial_default_action
        aid = init.action_id or table.info.const_default_action_id
        if aid:
            out.action.action.action_id = aid
            for arg in init.arguments:
                out.action.action.params.add(param_id=arg.param_id, value=arg.value)
        return out

    # ----------------------------------------------------------------- helpers

    def _require_pipeline(self) -> Pipeline:
        if self.pipeline is None:
            raise _fail(Code.FAILED_PRECONDITION, f"no forwarding pipeline on device {self.device_id} "
                                                  "(SetForwardingPipelineConfig first)")
        return self.pipeline

    def _check_batch(self, size: int, rpc: str, what: str) -> None:
        if size > self.max_batch:
            raise _fail(Code.RESOURCE_EXHAUSTED, f"{rpc} carries {size} {what}; this device takes at most "
                                                 f"{self.max_batch} per request: split the batch")

    def entry_count(self) -> int:
        return sum(len(es) for es in self.state.entries.values())

    @property
    def entries(self) -> dict[int, dict[EntryKey, p4r.TableEntry]]:
        """Table id -> entry key -> the TableEntry as written (direct-resource fields cleared)."""
        return self.state.entries

    @property
    def defaults(self) -> dict[int, p4r.TableEntry]:
        """Table id -> the default entry set by MODIFY (absent: the P4Info's initial default)."""
        return self.state.defaults


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out
