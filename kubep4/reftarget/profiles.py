"""Action profiles and action selectors of the reference target (spec §9.2 ActionProfileMember &
ActionProfileGroup, §9.2.3 one-shot action selector programming).

A P4Info ``ActionProfile`` implements the tables of its ``table_ids``; those tables (``Table.
implementation_id``) take no direct action: their entries name an ``action_profile_member_id``, an
``action_profile_group_id`` (selectors only) or a one-shot ``action_profile_action_set`` (selectors
only), and a table without an implementation refuses all three (INVALID_ARGUMENT).

Members (§9.2.1): ``member_id`` non-zero (INVALID_ARGUMENT); INSERT of an id in use ALREADY_EXISTS,
past the profile's ``size`` RESOURCE_EXHAUSTED (a size of 0 holds :data:`DEFAULT_PROFILE_SIZE`);
MODIFY / DELETE of an unknown id NOT_FOUND; an action is required (INVALID_ARGUMENT) and must be an
action of the profile's tables with its params; DELETE of a member in a group or referenced by a
table entry is FAILED_PRECONDITION.

Groups (§9.2.2): on a selector only (INVALID_ARGUMENT otherwise); ``group_id`` non-zero; INSERT of an
id in use ALREADY_EXISTS; MODIFY / DELETE of an unknown id NOT_FOUND; members must exist (NOT_FOUND),
each once (INVALID_ARGUMENT), weight > 0 (INVALID_ARGUMENT), at most ``max_member_weight`` under
``sum_of_members``, exactly 1 when the profile has ``weights_disallowed``.  ``max_size`` (§9.2.2.1):
when the profile's ``max_group_size`` is > 0 it must be in 1..max_group_size (INVALID_ARGUMENT); it
cannot change in a MODIFY (INVALID_ARGUMENT).  The group's size (sum of weights, or of members
under ``sum_of_members``) above ``max_size`` (or ``max_group_size`` when ``max_size`` is 0) is
RESOURCE_EXHAUSTED.  DELETE of a group referenced by a table entry is FAILED_PRECONDITION.

One-shot sets (§9.2.3): each action an action of the table, weight > 0, the set's size (as above)
at most ``max_group_size`` (INVALID_ARGUMENT); they count as members of the profile against its
``size`` (RESOURCE_EXHAUSTED) and read back exactly as written.  As PI does (BMv2, Stratum), a
profile is programmed one way at a time: one-shot sets while it has members or groups, or members,
groups and their references while one-shot entries use it, are INVALID_ARGUMENT "Invalid attempt to
mix action selector programming modes"; the mode resets once the profile holds nothing (PI's
``reset_selector_usage``).

Reads: ``action_profile_id`` 0 with id 0 reads every member (group) of every profile, a profile with
id 0 all of that profile, an id that one (none when it does not exist, as table reads do).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from kubep4.p4 import p4i, p4r
from kubep4.reftarget.errors import Code, fail, q
from kubep4.reftarget.values import UpdateType, check_action_spec, check_update_type

__all__ = ["ProfileStore", "DEFAULT_PROFILE_SIZE", "MIX_MESSAGE", "entry_ref"]

DEFAULT_PROFILE_SIZE = 1024    # members of a profile whose P4Info size is 0
MIX_MESSAGE = "Invalid attempt to mix action selector programming modes"   # PI's words
MANUAL, ONESHOT = "members and groups", "one-shot action sets"
Scope = p4i.ActionRef.Scope

# A table entry's use of a profile: ("member", id), ("group", id) or ("oneshot", members it counts).
Ref = tuple[str, int]


def entry_ref(action: p4r.TableAction) -> Ref:
    """What an installed entry of an indirect table uses."""
    kind = action.WhichOneof("type")
    if kind == "action_profile_member_id":
        return ("member", action.action_profile_member_id)
    if kind == "action_profile_group_id":
        return ("group", action.action_profile_group_id)
    return ("oneshot", len(action.action_profile_action_set.action_profile_actions))


@dataclass
class _Profile:
    info: p4i.ActionProfile
    actions: dict[int, int]                       # action id -> scope, over the profile's tables
    members: dict[int, p4r.ActionProfileMember] = field(default_factory=dict)
    groups: dict[int, p4r.ActionProfileGroup] = field(default_factory=dict)
    in_groups: dict[int, int] = field(default_factory=dict)     # member id -> groups holding it
    member_refs: dict[int, int] = field(default_factory=dict)   # member id -> table entries
    group_refs: dict[int, int] = field(default_factory=dict)    # group id -> table entries
    oneshot_entries: int = 0
    oneshot_members: int = 0
    mode: str | None = None

    @property
    def id(self) -> int:
        return self.info.preamble.id

    @property
    def name(self) -> str:
        return q(self.info.preamble.name)

    @property
    def size(self) -> int:
        return self.info.size or DEFAULT_PROFILE_SIZE

    @property
    def by_members(self) -> bool:
        return self.info.WhichOneof("selector_size_semantics") == "sum_of_members"

    def empty(self) -> bool:
        return not self.members and not self.groups and not self.oneshot_entries

    def copy(self) -> "_Profile":
        return _Profile(self.info, self.actions, dict(self.members), dict(self.groups), dict(self.in_groups),
                        dict(self.member_refs), dict(self.group_refs), self.oneshot_entries,
                        self.oneshot_members, self.mode)

    def use(self, mode: str) -> None:
        """PI's check_selector_usage: the profile is programmed one way until it is empty again."""
        if self.mode is not None and self.mode != mode and not self.empty():
            raise fail(Code.INVALID_ARGUMENT, f"{MIX_MESSAGE}: profile {self.name} is programmed with "
                                              f"{self.mode}, not {mode}")

    def settle(self, mode: str) -> None:
        self.mode = None if self.empty() else mode


class ProfileStore:
    """The members, groups and one-shot uses of every action profile of a device."""

    def __init__(self, info: p4i.P4Info | None = None):
        self.profiles: dict[int, _Profile] = {}
        self.action_params: dict[int, dict[int, p4i.Action.Param]] = {}
        if info is None:
            return
        self.action_params = {a.preamble.id: {p.id: p for p in a.params} for a in info.actions}
        tables = {t.preamble.id: t for t in info.tables}
        for prof in info.action_profiles:
            actions: dict[int, int] = {}
            for tid in prof.table_ids:
                for ref in getattr(tables.get(tid), "action_refs", ()):
                    actions.setdefault(ref.id, ref.scope)
            self.profiles[prof.preamble.id] = _Profile(prof, actions)

    def copy(self) -> "ProfileStore":
        out = ProfileStore()
        out.action_params = self.action_params
        out.profiles = {k: p.copy() for k, p in self.profiles.items()}
        return out

    def _profile(self, profile_id: int) -> _Profile:
        if profile_id == 0:
            raise fail(Code.INVALID_ARGUMENT, "action_profile_id 0 is not an action profile "
                                              "(wildcards are for reads)")
        prof = self.profiles.get(profile_id)
        if prof is None:
            raise fail(Code.INVALID_ARGUMENT, f"unknown action profile id {profile_id}")
        return prof

    def _check_action(self, prof: _Profile, action: p4r.Action, what: str) -> None:
        scope = prof.actions.get(action.action_id)
        if scope is None:
            raise fail(Code.INVALID_ARGUMENT, f"{what}: action id {action.action_id} is not an action of "
                                              f"the tables of profile {prof.name}")
        if scope == Scope.DEFAULT_ONLY:
            raise fail(Code.INVALID_ARGUMENT, f"{what}: action id {action.action_id} is a default-only action")
        check_action_spec(self.action_params, action, what)

    def _weights(self, prof: _Profile, weights: list[int], what: str) -> int:
        """Check each weight; return the group's size as ``selector_size_semantics`` counts it."""
        max_weight = prof.info.sum_of_members.max_member_weight if prof.by_members else 0
        for i, w in enumerate(weights):
            if w <= 0:
                raise fail(Code.INVALID_ARGUMENT, f"{what}[{i}].weight: {w} is not a positive weight")
            if prof.info.weights_disallowed and w != 1:
                raise fail(Code.INVALID_ARGUMENT, f"{what}[{i}].weight: profile {prof.name} takes no weights")
            if max_weight > 0 and w > max_weight:
                raise fail(Code.INVALID_ARGUMENT, f"{what}[{i}].weight: {w} exceeds max_member_weight "
                                                  f"{max_weight}")
        return len(weights) if prof.by_members else sum(weights)

    # ----------------------------------------------------------------- members

    def write_member(self, update: p4r.Update) -> None:
        check_update_type(update)
        msg = update.entity.action_profile_member
        prof = self._profile(msg.action_profile_id)
        if msg.member_id == 0:
            raise fail(Code.INVALID_ARGUMENT, "member_id 0 is not a member id")
        if update.type == UpdateType.DELETE:
            if msg.member_id not in prof.members:
                raise fail(Code.NOT_FOUND, f"no member {msg.member_id} in profile {prof.name}")
            if prof.in_groups.get(msg.member_id):
                raise fail(Code.FAILED_PRECONDITION, f"member {msg.member_id} is in "
                                                     f"{prof.in_groups[msg.member_id]} group(s) of {prof.name}")
            if prof.member_refs.get(msg.member_id):
                raise fail(Code.FAILED_PRECONDITION, f"member {msg.member_id} of {prof.name} is used by "
                                                     f"{prof.member_refs[msg.member_id]} table entries")
            del prof.members[msg.member_id]
            prof.settle(MANUAL)
            return
        prof.use(MANUAL)
        if not msg.HasField("action"):
            raise fail(Code.INVALID_ARGUMENT, f"member {msg.member_id} needs an action")
        self._check_action(prof, msg.action, "action_profile_member.action")
        if update.type == UpdateType.INSERT:
            if msg.member_id in prof.members:
                raise fail(Code.ALREADY_EXISTS, f"member {msg.member_id} already exists in {prof.name}")
            if len(prof.members) >= prof.size:
                raise fail(Code.RESOURCE_EXHAUSTED, f"profile {prof.name} is full ({prof.size} members)")
        elif msg.member_id not in prof.members:
            raise fail(Code.NOT_FOUND, f"no member {msg.member_id} in profile {prof.name}")
        prof.members[msg.member_id] = _copy(msg)
        prof.settle(MANUAL)

    # ----------------------------------------------------------------- groups

    def write_group(self, update: p4r.Update) -> None:
        check_update_type(update)
        msg = update.entity.action_profile_group
        prof = self._profile(msg.action_profile_id)
        if not prof.info.with_selector:
            raise fail(Code.INVALID_ARGUMENT, f"profile {prof.name} is not an action selector: it has no groups")
        if msg.group_id == 0:
            raise fail(Code.INVALID_ARGUMENT, "group_id 0 is not a group id")
        old = prof.groups.get(msg.group_id)
        if update.type == UpdateType.DELETE:
            if old is None:
                raise fail(Code.NOT_FOUND, f"no group {msg.group_id} in profile {prof.name}")
            if prof.group_refs.get(msg.group_id):
                raise fail(Code.FAILED_PRECONDITION, f"group {msg.group_id} of {prof.name} is used by "
                                                     f"{prof.group_refs[msg.group_id]} table entries")
            self._hold(prof, old, -1)
            del prof.groups[msg.group_id]
            prof.settle(MANUAL)
            return
        prof.use(MANUAL)
        if update.type == UpdateType.INSERT and old is not None:
            raise fail(Code.ALREADY_EXISTS, f"group {msg.group_id} already exists in {prof.name}")
        if update.type == UpdateType.MODIFY:
            if old is None:
                raise fail(Code.NOT_FOUND, f"no group {msg.group_id} in profile {prof.name}")
            if msg.max_size != old.max_size:
                raise fail(Code.INVALID_ARGUMENT, f"max_size of group {msg.group_id} is {old.max_size}: "
                                                  "a MODIFY cannot change it")
        max_group = prof.info.max_group_size
        if msg.max_size < 0:
            raise fail(Code.INVALID_ARGUMENT, f"max_size {msg.max_size} is negative")
        if max_group > 0 and not 0 < msg.max_size <= max_group:
            raise fail(Code.INVALID_ARGUMENT, f"max_size {msg.max_size} must be in 1..{max_group} "
                                              f"(max_group_size of {prof.name})")
        seen: set[int] = set()
        for i, m in enumerate(msg.members):
            if m.member_id in seen:
                raise fail(Code.INVALID_ARGUMENT, f"members[{i}]: member {m.member_id} is given twice")
            seen.add(m.member_id)
            if m.member_id not in prof.members:
                raise fail(Code.NOT_FOUND, f"members[{i}]: no member {m.member_id} in profile {prof.name}")
        size = self._weights(prof, [m.weight for m in msg.members], "members")
        limit = msg.max_size or max_group
        if limit and size > limit:
            raise fail(Code.RESOURCE_EXHAUSTED, f"group {msg.group_id} would have size {size}: its "
                                                f"max_size is {limit}")
        if old is not None:
            self._hold(prof, old, -1)
        prof.groups[msg.group_id] = _copy(msg)
        self._hold(prof, msg, +1)
        prof.settle(MANUAL)

    @staticmethod
    def _hold(prof: _Profile, group: p4r.ActionProfileGroup, delta: int) -> None:
        for m in group.members:
            n = prof.in_groups.get(m.member_id, 0) + delta
            if n:
                prof.in_groups[m.member_id] = n
            else:
                prof.in_groups.pop(m.member_id, None)

    # ----------------------------------------------------------------- table entries

    def check_entry_action(self, profile_id: int, table_name: str, action: p4r.TableAction,
                           check_action: Callable[[p4r.Action, str], None], old: Ref | None) -> Ref:
        """What a table entry of an indirect table uses; refuse what it cannot (before any change).
        ``check_action`` checks a one-shot action against the table; ``old`` is what the entry being
        modified used (its one-shot members are free again)."""
        prof = self.profiles.get(profile_id)
        if prof is None:
            raise fail(Code.INVALID_ARGUMENT, f"table {table_name} names unknown action profile {profile_id}")
        kind = action.WhichOneof("type")
        if kind is None:
            raise fail(Code.INVALID_ARGUMENT, f"an entry of table {table_name} needs an action")
        if kind == "action":
            raise fail(Code.INVALID_ARGUMENT, f"table {table_name} is implemented by profile {prof.name}: "
                                              "its entries take a member, a group or a one-shot action set, "
                                              "not an action")
        if kind == "action_profile_member_id":
            prof.use(MANUAL)
            if action.action_profile_member_id not in prof.members:
                raise fail(Code.NOT_FOUND, f"no member {action.action_profile_member_id} in profile {prof.name}")
            return ("member", action.action_profile_member_id)
        if not prof.info.with_selector:
            raise fail(Code.INVALID_ARGUMENT, f"profile {prof.name} of table {table_name} is not an action "
                                              f"selector: it takes no {kind}")
        if kind == "action_profile_group_id":
            prof.use(MANUAL)
            if action.action_profile_group_id not in prof.groups:
                raise fail(Code.NOT_FOUND, f"no group {action.action_profile_group_id} in profile {prof.name}")
            return ("group", action.action_profile_group_id)
        prof.use(ONESHOT)
        actions = action.action_profile_action_set.action_profile_actions
        for i, a in enumerate(actions):
            check_action(a.action, f"action_profile_action_set.action_profile_actions[{i}].action")
        size = self._weights(prof, [a.weight for a in actions], "action_profile_actions")
        if prof.info.max_group_size and size > prof.info.max_group_size:
            raise fail(Code.INVALID_ARGUMENT, f"the one-shot action set has size {size}: max_group_size of "
                                              f"{prof.name} is {prof.info.max_group_size}")
        freed = old[1] if old is not None and old[0] == "oneshot" else 0
        if prof.oneshot_members - freed + len(actions) > prof.size:
            raise fail(Code.RESOURCE_EXHAUSTED, f"profile {prof.name} is full ({prof.size} members)")
        return ("oneshot", len(actions))

    def refer(self, profile_id: int, ref: Ref, delta: int) -> None:
        """Count (``delta`` +1) or forget (-1) a table entry's use of the profile."""
        prof = self.profiles[profile_id]
        kind, n = ref
        if kind == "oneshot":
            prof.oneshot_entries += delta
            prof.oneshot_members += delta * n
            prof.settle(ONESHOT)
            return
        counts = prof.member_refs if kind == "member" else prof.group_refs
        left = counts.get(n, 0) + delta
        if left:
            counts[n] = left
        else:
            counts.pop(n, None)

    # ----------------------------------------------------------------- read

    def read(self, entity: p4r.Entity) -> list[p4r.Entity]:
        which = entity.WhichOneof("entity")
        msg = getattr(entity, which)
        member = which == "action_profile_member"
        item_id = msg.member_id if member else msg.group_id
        if msg.action_profile_id == 0:
            if item_id:
                raise fail(Code.INVALID_ARGUMENT, "a wildcard read (action_profile_id 0) takes no member or "
                                                  "group id")
            profiles = [self.profiles[k] for k in sorted(self.profiles)]
        else:
            prof = self.profiles.get(msg.action_profile_id)
            if prof is None:
                raise fail(Code.INVALID_ARGUMENT, f"unknown action profile id {msg.action_profile_id}")
            if not member and not prof.info.with_selector:
                raise fail(Code.INVALID_ARGUMENT, f"profile {prof.name} is not an action selector: it has no groups")
            profiles = [prof]
        out: list[p4r.Entity] = []
        for prof in profiles:
            items = prof.members if member else prof.groups
            if item_id:
                found = items.get(item_id)
                chosen = [found] if found is not None else []
            else:
                chosen = [items[k] for k in sorted(items)]
            out.extend(p4r.Entity(**{which: m}) for m in chosen)
        return out

    # ----------------------------------------------------------------- pipeline changes

    def reconcile(self, info: p4i.P4Info) -> tuple["ProfileStore", list[str]]:
        """The members, groups and one-shot uses kept by RECONCILE_AND_COMMIT: a profile holding any
        must keep its id, its selector-ness and its size limits, and every member's action must still be
        an action of its tables with the same params."""
        new = ProfileStore(info)
        problems: list[str] = []
        for pid, prof in self.profiles.items():
            if prof.empty():
                continue
            other = new.profiles.get(pid)
            if other is None:
                problems.append(f"action profile {prof.name} (id {pid}) holding members is gone")
                continue
            shape = ("with_selector", "size", "max_group_size", "weights_disallowed")
            if any(getattr(prof.info, f) != getattr(other.info, f) for f in shape) or \
                    prof.info.WhichOneof("selector_size_semantics") != other.info.WhichOneof("selector_size_semantics"):
                problems.append(f"action profile {prof.name} (id {pid}) changed its kind or size limits")
                continue
            bad = None
            for m in prof.members.values():
                aid = m.action.action_id
                old_params = sorted((p.id, p.bitwidth) for p in self.action_params.get(aid, {}).values())
                new_params = sorted((p.id, p.bitwidth) for p in new.action_params.get(aid, {}).values())
                if aid not in other.actions or old_params != new_params:
                    bad = f"member {m.member_id} of action profile {prof.name}: action id {aid} is no longer " \
                          "an action of its tables with the same params"
                    break
            if bad:
                problems.append(bad)
                continue
            kept = prof.copy()
            kept.info, kept.actions = other.info, other.actions
            new.profiles[pid] = kept
        return new, problems


def _copy(msg):
    out = type(msg)()
    out.CopyFrom(msg)
    return out
