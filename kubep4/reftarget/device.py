"""The per-device state machine of the P4Runtime reference target.

Everything a P4Runtime switch remembers lives here: the forwarding pipeline
(P4Info, device config, cookie), a saved-but-not-committed config, the table
store and default-action overrides, and the client arbitration per role.

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
  has no per-update details);
* enum values the P4Runtime protos do not define (``Update.type``,
  ``WriteRequest.atomicity``, ``SetForwardingPipelineConfigRequest.action``,
  ``GetForwardingPipelineConfigRequest.response_type``, P4Info match types and
  action scopes) are INVALID_ARGUMENT, as are negative table sizes.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from google.rpc import code_pb2, status_pb2

from kubep4.p4 import MatchKind, P4InfoIndex, p4i, p4r

__all__ = ["P4RuntimeError", "Session", "Device", "DeviceStats", "Pipeline", "election_id_of",
           "uint128", "update_error", "DEFAULT_TABLE_SIZE", "MAX_DEVICE_ENTRIES", "MAX_BATCH"]

Code = code_pb2
SetAction = p4r.SetForwardingPipelineConfigRequest.Action
ResponseType = p4r.GetForwardingPipelineConfigRequest.ResponseType
UpdateType = p4r.Update.Type
Atomicity = p4r.WriteRequest.Atomicity
Scope = p4i.ActionRef.Scope

DEFAULT_TABLE_SIZE = 1024      # entries of a table whose P4Info size is 0
MAX_DEVICE_ENTRIES = 65_536    # entries of all tables of a device together
MAX_BATCH = 10_000             # updates of a Write, entities of a Read

# Match kinds whose presence requires a priority (P4Runtime spec §9.1).
_PRIORITY_KINDS = (MatchKind.TERNARY, MatchKind.RANGE, MatchKind.OPTIONAL)
_KIND_NAMES = {MatchKind.EXACT: "exact", MatchKind.LPM: "lpm", MatchKind.TERNARY: "ternary",
               MatchKind.RANGE: "range", MatchKind.OPTIONAL: "optional"}


class P4RuntimeError(Exception):
    """A refused request: ``code`` is a ``google.rpc.Code`` value."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"P4RuntimeError({code_pb2.Code.Name(self.code)}, {self.message!r})"


def _q(name: str, limit: int = 80) -> str:
    """A P4Info name as quoted in a message: a hostile 100k-character name becomes its two ends."""
    return name if len(name) <= limit else f"{name[:limit // 2]}...{name[-(limit // 4):]}"


def _fail(code: int, message: str) -> P4RuntimeError:
    return P4RuntimeError(code, message)


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


def _check_bytes(value: bytes, bitwidth: int, what: str) -> int:
    """Validate a canonical P4Runtime bytestring (spec §8.4) and return its integer value."""
    if not value:
        raise _fail(Code.INVALID_ARGUMENT, f"{what}: empty bytestring")
    if len(value) > 1 and value[0] == 0:
        raise _fail(Code.INVALID_ARGUMENT, f"{what}: bytestring {value.hex()} is not canonical "
                                           "(leading zero bytes)")
    number = int.from_bytes(value, "big")
    if bitwidth and number.bit_length() > bitwidth:
        raise _fail(Code.INVALID_ARGUMENT, f"{what}: value 0x{value.hex()} does not fit in {bitwidth} bits")
    return number


MatchKey = tuple[tuple[int, str, tuple[bytes, ...]], ...]
EntryKey = tuple[MatchKey, int]


def _match_key(table: _TableInfo, matches: Iterable[p4r.FieldMatch], what: str = "match") -> MatchKey:
    """Validate the match of an entry against its table; return a canonical, hashable key."""
    out: list[tuple[int, str, tuple[bytes, ...]]] = []
    seen: set[int] = set()
    for i, fm in enumerate(matches):
        path = f"{what}[{i}]"
        mf = table.fields.get(fm.field_id)
        if mf is None:
            raise _fail(Code.INVALID_ARGUMENT,
                        f"{path}: table {table.name} has no match field id {fm.field_id}")
        if fm.field_id in seen:
            raise _fail(Code.INVALID_ARGUMENT, f"{path}: match field {_q(mf.name)} given twice")
        seen.add(fm.field_id)
        kind = fm.WhichOneof("field_match_type")
        expected = _KIND_NAMES.get(mf.match_type)
        if kind is None:
            raise _fail(Code.INVALID_ARGUMENT, f"{path}: no match value for field {_q(mf.name)}")
        if kind == "other" or expected is None:
            raise _fail(Code.UNIMPLEMENTED, f"{path}: match kind of field {_q(mf.name)} is not supported")
        if kind != expected:
            raise _fail(Code.INVALID_ARGUMENT,
                        f"{path}: field {_q(mf.name)} is matched by {expected}, not {kind}")
        w = mf.bitwidth
        fp = f"{path} ({_q(mf.name)})"
        if kind == "exact":
            _check_bytes(fm.exact.value, w, f"{fp}.exact.value")
            values: tuple[bytes, ...] = (fm.exact.value,)
        elif kind == "lpm":
            plen = fm.lpm.prefix_len
            if plen <= 0:
                raise _fail(Code.INVALID_ARGUMENT,
                            f"{fp}.lpm.prefix_len: a don't-care LPM match (prefix 0) must be omitted")
            if plen > w:
                raise _fail(Code.INVALID_ARGUMENT, f"{fp}.lpm.prefix_len: {plen} exceeds bitwidth {w}")
            v = _check_bytes(fm.lpm.value, w, f"{fp}.lpm.value")
            # the low (w - plen) bits must be 0: v's trailing zeros, without building a w-bit mask
            if v and ((v & -v).bit_length() - 1) < w - plen:
                raise _fail(Code.INVALID_ARGUMENT,
                            f"{fp}.lpm.value: bits are set beyond the /{plen} prefix")
            values = (fm.lpm.value, plen.to_bytes(4, "big"))
        elif kind == "ternary":
            v = _check_bytes(fm.ternary.value, w, f"{fp}.ternary.value")
            m = _check_bytes(fm.ternary.mask, w, f"{fp}.ternary.mask")
            if m == 0:
                raise _fail(Code.INVALID_ARGUMENT,
                            f"{fp}.ternary.mask: a don't-care ternary match (mask 0) must be omitted")
            if v & ~m:
                raise _fail(Code.INVALID_ARGUMENT, f"{fp}.ternary.value: bits are set outside the mask")
            values = (fm.ternary.value, fm.ternary.mask)
        elif kind == "range":
            lo = _check_bytes(fm.range.low, w, f"{fp}.range.low")
            hi = _check_bytes(fm.range.high, w, f"{fp}.range.high")
            if lo > hi:
                raise _fail(Code.INVALID_ARGUMENT, f"{fp}.range: low is greater than high")
            if w and lo == 0 and hi.bit_length() == w and not (hi & (hi + 1)):  # hi is w one-bits
                raise _fail(Code.INVALID_ARGUMENT,
                            f"{fp}.range: a don't-care range (full range) must be omitted")
            values = (fm.range.low, fm.range.high)
        else:  # optional
            _check_bytes(fm.optional.value, w, f"{fp}.optional.value")
            values = (fm.optional.value,)
        out.append((fm.field_id, kind, values))
    for mf in table.fields.values():
        if mf.match_type == MatchKind.EXACT and mf.id not in seen:
            raise _fail(Code.INVALID_ARGUMENT,
                        f"{what}: exact match field {_q(mf.name)} of table {table.name} is mandatory")
    out.sort()
    return tuple(out)


def _check_priority(table: _TableInfo, priority: int) -> None:
    if table.needs_priority:
        if priority <= 0:
            raise _fail(Code.INVALID_ARGUMENT, f"table {table.name} has ternary/range/optional match "
                                               "fields: priority must be > 0")
    elif priority != 0:
        raise _fail(Code.INVALID_ARGUMENT, f"table {table.name} takes no priority (got {priority})")


# --------------------------------------------------------------------------- the device


@dataclass
class _RoleState:
    sessions: list[Session] = field(default_factory=list)

    def primary(self) -> Session | None:
        return max(self.sessions, key=lambda s: s.election_id or 0, default=None)


class Device:
    """One P4Runtime device: pipeline, saved config, tables and arbitration."""

    def __init__(self, device_id: int, default_table_size: int = DEFAULT_TABLE_SIZE,
                 max_entries: int = MAX_DEVICE_ENTRIES, max_batch: int = MAX_BATCH):
        self.device_id = device_id
        self.default_table_size = default_table_size
        self.max_entries = max_entries
        self.max_batch = max_batch
        self.pipeline: Pipeline | None = None
        self.saved: tuple[p4r.ForwardingPipelineConfig, P4InfoIndex] | None = None
        # table id -> entry key -> the TableEntry exactly as written
        self.entries: dict[int, dict[EntryKey, p4r.TableEntry]] = {}
        # table id -> the default-action entry set by MODIFY (absent: the P4Info initial default)
        self.defaults: dict[int, p4r.TableEntry] = {}
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
        """Apply a SetForwardingPipelineConfig action (arbitration is checked by the caller)."""
        if action == SetAction.VERIFY:
            validate_config(config)
            self.stats.pipeline_verifies += 1
        elif action == SetAction.VERIFY_AND_SAVE:
            index = validate_config(config)
            self.saved = (_copy(config), index)
            self.stats.pipeline_saves += 1
        elif action == SetAction.VERIFY_AND_COMMIT:
            index = validate_config(config)
            self._commit(_copy(config), index)
        elif action == SetAction.COMMIT:
            if self.saved is None:
                raise _fail(Code.FAILED_PRECONDITION, "COMMIT: no saved forwarding pipeline config "
                                                      "(use VERIFY_AND_SAVE first)")
            saved_config, index = self.saved
            self._commit(saved_config, index)
        elif action == SetAction.RECONCILE_AND_COMMIT:
            index = validate_config(config)
            new = Pipeline(_copy(config), index, self.default_table_size)
            kept_entries, kept_defaults = self._reconcile(new)
            self.pipeline = new
            self.entries = kept_entries
            self.defaults = kept_defaults
            self.saved = None
            self.stats.pipeline_commits += 1
            self.stats.reconciles += 1
        else:
            raise _fail(Code.INVALID_ARGUMENT, f"unsupported SetForwardingPipelineConfig action {action}")

    def _commit(self, config: p4r.ForwardingPipelineConfig, index: P4InfoIndex) -> None:
        self.pipeline = Pipeline(config, index, self.default_table_size)
        self.entries = {}
        self.defaults = {}
        self.saved = None
        self.stats.pipeline_commits += 1

    def _reconcile(self, new: Pipeline) -> tuple[dict[int, dict[EntryKey, p4r.TableEntry]],
                                                  dict[int, p4r.TableEntry]]:
        """Check that every installed entry survives ``new``; INVALID_ARGUMENT otherwise."""
        if self.pipeline is None:
            return {}, {}
        old = self.pipeline
        problems: list[str] = []
        for table_id in sorted(set(self.entries) | set(self.defaults)):
            entries = self.entries.get(table_id, {})
            default = self.defaults.get(table_id)
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
            for entry in itertools.chain(entries.values(), [default] if default is not None else []):
                aid = entry.action.action.action_id
                if aid not in new_t.action_scopes:
                    problems.append(f"action id {aid} used by entries of {old_t.name} is no longer "
                                    "an action of the table")
                    break
                old_params = sorted((p.id, p.bitwidth) for p in old.action_params[aid].values())
                new_params = sorted((p.id, p.bitwidth) for p in new.action_params.get(aid, {}).values())
                if old_params != new_params:
                    problems.append(f"action id {aid} used by entries of {old_t.name} changed its params")
                    break
        if problems:
            raise _fail(Code.INVALID_ARGUMENT,
                        "RECONCILE_AND_COMMIT cannot keep the installed entries: " + "; ".join(problems))
        return ({tid: dict(es) for tid, es in self.entries.items() if es}, dict(self.defaults))

    def get_pipeline(self, response_type: int) -> p4r.ForwardingPipelineConfig:
        if self.pipeline is None:
            raise _fail(Code.FAILED_PRECONDITION, f"no forwarding pipeline on device {self.device_id}")
        cfg = self.pipeline.config
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
        DATAPLANE_ATOMIC apply all or nothing; when one fails the others report ABORTED.
        """
        pipeline = self._require_pipeline()
        updates = list(updates)
        self._check_batch(len(updates), "Write", "updates")
        self.stats.write_requests += 1
        if atomicity == Atomicity.CONTINUE_ON_ERROR:
            tally = [self.entry_count()]
            results = [self._try_update(pipeline, u, self.entries, self.defaults, tally) for u in updates]
            self._count(updates, results)
            return results
        if atomicity not in (Atomicity.ROLLBACK_ON_ERROR, Atomicity.DATAPLANE_ATOMIC):
            raise _fail(Code.INVALID_ARGUMENT, f"unknown atomicity {atomicity}")
        entries = {tid: dict(es) for tid, es in self.entries.items()}
        defaults = dict(self.defaults)
        tally = [self.entry_count()]
        results = [self._try_update(pipeline, u, entries, defaults, tally) for u in updates]
        if any(r is not None for r in results):
            aborted = _fail(Code.ABORTED, "not applied: another update of the batch failed")
            results = [r if r is not None else aborted for r in results]
            self.stats.writes_failed += len(updates)
            return results
        self.entries, self.defaults = entries, defaults
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

    def _try_update(self, pipeline: Pipeline, update: p4r.Update,
                    entries: dict[int, dict[EntryKey, p4r.TableEntry]],
                    defaults: dict[int, p4r.TableEntry], tally: list[int]) -> P4RuntimeError | None:
        try:
            self._apply_update(pipeline, update, entries, defaults, tally)
        except P4RuntimeError as e:
            return e
        return None

    def _apply_update(self, pipeline: Pipeline, update: p4r.Update,
                      entries: dict[int, dict[EntryKey, p4r.TableEntry]],
                      defaults: dict[int, p4r.TableEntry], tally: list[int]) -> None:
        """Apply one update to ``entries`` / ``defaults``; ``tally[0]`` counts the entries of all tables."""
        which = update.entity.WhichOneof("entity")
        if which is None:
            raise _fail(Code.INVALID_ARGUMENT, "update has no entity")
        if which != "table_entry":
            raise _fail(Code.UNIMPLEMENTED, f"writing {which} entities is not supported")
        if update.type not in (UpdateType.INSERT, UpdateType.MODIFY, UpdateType.DELETE):
            what = "UNSPECIFIED" if update.type == UpdateType.UNSPECIFIED else f"unknown ({update.type})"
            raise _fail(Code.INVALID_ARGUMENT, f"update type is {what}")
        entry = update.entity.table_entry
        if entry.table_id == 0:
            raise _fail(Code.INVALID_ARGUMENT, "table_id 0 is not a table (wildcards are for reads)")
        table = pipeline.tables.get(entry.table_id)
        if table is None:
            raise _fail(Code.INVALID_ARGUMENT, f"unknown table id {entry.table_id}")
        if entry.is_default_action:
            self._write_default(pipeline, table, update, defaults)
            return
        key = (_match_key(table, entry.match), entry.priority)
        _check_priority(table, entry.priority)
        store = entries.get(table.id, {})
        if update.type == UpdateType.DELETE:
            if key not in store:
                raise _fail(Code.NOT_FOUND, f"no such entry in table {table.name}")
            del store[key]
            tally[0] -= 1
            if not store:
                del entries[table.id]
            return
        self._check_action(pipeline, table, entry, default=False)
        if update.type == UpdateType.INSERT:
            if key in store:
                raise _fail(Code.ALREADY_EXISTS, f"an entry with this match and priority already exists "
                                                 f"in table {table.name}")
            if len(store) >= table.size:
                bound = f"{table.size} entries" + ("" if table.info.size else ", the default bound of size 0")
                raise _fail(Code.RESOURCE_EXHAUSTED, f"table {table.name} is full ({bound})")
            if tally[0] >= self.max_entries:
                raise _fail(Code.RESOURCE_EXHAUSTED, f"the device is full ({self.max_entries} entries "
                                                     "in all tables)")
            tally[0] += 1
        elif key not in store:
            raise _fail(Code.NOT_FOUND, f"no such entry in table {table.name}")
        entries.setdefault(table.id, store)[key] = _copy(entry)

    def _write_default(self, pipeline: Pipeline, table: _TableInfo, update: p4r.Update,
                       defaults: dict[int, p4r.TableEntry]) -> None:
        entry = update.entity.table_entry
        if update.type != UpdateType.MODIFY:
            raise _fail(Code.INVALID_ARGUMENT, "a default action entry can only be MODIFY'd")
        if len(entry.match) or entry.priority:
            raise _fail(Code.INVALID_ARGUMENT, "a default action entry has no match and no priority")
        if table.info.const_default_action_id:
            raise _fail(Code.PERMISSION_DENIED, f"the default action of table {table.name} is const")
        if not entry.HasField("action"):  # reset to the P4Info's initial default action
            defaults.pop(table.id, None)
            return
        self._check_action(pipeline, table, entry, default=True)
        defaults[table.id] = _copy(entry)

    def _check_action(self, pipeline: Pipeline, table: _TableInfo, entry: p4r.TableEntry,
                      default: bool) -> None:
        kind = entry.action.WhichOneof("type")
        if kind is None:
            raise _fail(Code.INVALID_ARGUMENT, f"an entry of table {table.name} needs an action")
        if kind != "action":
            raise _fail(Code.UNIMPLEMENTED, f"{kind} actions (action profiles) are not supported")
        action = entry.action.action
        scope = table.action_scopes.get(action.action_id)
        if scope is None:
            raise _fail(Code.INVALID_ARGUMENT,
                        f"action id {action.action_id} is not an action of table {table.name}")
        if default and scope == Scope.TABLE_ONLY:
            raise _fail(Code.INVALID_ARGUMENT, f"action id {action.action_id} cannot be a default action")
        if not default and scope == Scope.DEFAULT_ONLY:
            raise _fail(Code.INVALID_ARGUMENT, f"action id {action.action_id} is a default-only action")
        params = pipeline.action_params.get(action.action_id, {})
        given: set[int] = set()
        for i, prm in enumerate(action.params):
            spec = params.get(prm.param_id)
            if spec is None:
                raise _fail(Code.INVALID_ARGUMENT, f"action.params[{i}]: action id {action.action_id} "
                                                   f"has no param id {prm.param_id}")
            if prm.param_id in given:
                raise _fail(Code.INVALID_ARGUMENT, f"action.params[{i}]: param {_q(spec.name)} given twice")
            given.add(prm.param_id)
            _check_bytes(prm.value, spec.bitwidth, f"action.params[{i}] ({_q(spec.name)})")
        missing = [p.name for pid, p in params.items() if pid not in given]
        if missing:
            raise _fail(Code.INVALID_ARGUMENT, f"action id {action.action_id} is missing params "
                                               f"{', '.join(missing)}")

    # ----------------------------------------------------------------- read

    def read(self, entities: Iterable[p4r.Entity]) -> Iterator[p4r.Entity]:
        """Resolve a Read request. Validation happens before the first entity is yielded."""
        pipeline = self._require_pipeline()
        entities = list(entities)
        self._check_batch(len(entities), "Read", "entities")
        plans = [self._plan_read(pipeline, e) for e in entities]
        return itertools.chain.from_iterable(plans)

    def _plan_read(self, pipeline: Pipeline, entity: p4r.Entity) -> list[p4r.Entity]:
        which = entity.WhichOneof("entity")
        if which != "table_entry":
            raise _fail(Code.UNIMPLEMENTED, f"reading {which} entities is not supported")
        query = entity.table_entry
        if query.table_id == 0:
            if len(query.match) or query.is_default_action:
                raise _fail(Code.INVALID_ARGUMENT, "a wildcard read (table_id 0) takes no match")
            return [p4r.Entity(table_entry=e)
                    for tid in sorted(self.entries) for e in self.entries[tid].values()]
        table = pipeline.tables.get(query.table_id)
        if table is None:
            raise _fail(Code.INVALID_ARGUMENT, f"unknown table id {query.table_id}")
        if query.is_default_action:
            return [p4r.Entity(table_entry=self.default_entry(pipeline, table))]
        store = self.entries.get(table.id, {})
        if len(query.match):
            key = (_match_key(table, query.match, "table_entry.match"), query.priority)
            found = store.get(key)
            return [p4r.Entity(table_entry=found)] if found is not None else []
        return [p4r.Entity(table_entry=e) for e in store.values()
                if not query.priority or e.priority == query.priority]

    def default_entry(self, pipeline: Pipeline, table: _TableInfo) -> p4r.TableEntry:
        entry = self.defaults.get(table.id)
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
        return sum(len(es) for es in self.entries.values())


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out
