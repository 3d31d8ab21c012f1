"""Admission of every entity kind, through the real apiserver and admission service, on the multipath
example (examples/multipath/deployment.yaml, whose Deployment carries every kind but registers):
the valid forms are accepted, each invalid one is INVALID_ARGUMENT at its field path, nothing written.
The bounds (review time, object size, the entry quota) count every entity: pure functions."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_asyncio

from kubep4 import errors, manifest
from kubep4 import store as st
from kubep4.client import AsyncClient
from kubep4.entities import entity_count, to_p4_entities
from kubep4.etcd_server import EtcdServer
from kubep4.gen.kubep4.v1 import admission_pb2 as ka
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import P4InfoIndex, p4i, parse_p4info
from services.admission.validation import Policy, quota_violations, review_deployment, review_pipeline

from .conftest import ROOT, Front

EXAMPLE = ROOT / "examples" / "multipath" / "deployment.yaml"
WIDER = "multipath-wider"  # the same program with a value set, a member bound and a group bound


def _example() -> tuple[kr.Pipeline, kr.Deployment]:
    pipeline, deployment = manifest.load(str(EXAMPLE))
    return pipeline, deployment


def _wider_pipeline() -> kr.Pipeline:
    p, _ = _example()
    p.metadata.name = WIDER
    info = parse_p4info(p.spec.artifacts.p4info)
    vs = info.value_sets.add(size=2)
    vs.preamble.id, vs.preamble.name, vs.preamble.alias = 55555555, "MpParser.ethertypes", "ethertypes"
    vs.match.add(id=1, name="type", bitwidth=16, match_type=p4i.MatchField.EXACT)
    info.action_profiles[0].size = 3
    info.action_profiles[0].max_group_size = 4
    p.spec.artifacts.p4info = info.SerializeToString()
    return p


def _deployment(mutate: Callable[[kr.Deployment], None], name: str = "other") -> kr.Deployment:
    _, d = _example()
    d.metadata.name = name
    mutate(d)
    return d


def _wider(mutate: Callable[[kr.Deployment], None]) -> Callable[[kr.Deployment], None]:
    def on_wider(d: kr.Deployment) -> None:
        d.spec.pipeline = WIDER
        mutate(d)
    return on_wider


def _set(path: str, value) -> Callable[[kr.Deployment], None]:
    """A mutation setting ``spec.<path>`` (dotted, with [i] indexes) to value."""
    def mutate(d: kr.Deployment) -> None:
        obj = d.spec
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        setattr(obj, parts[-1], value)
    return mutate


def _add(field: str, **kw) -> Callable[[kr.Deployment], None]:
    return lambda d: getattr(d.spec, field).add(**kw)


def _both(*mutations) -> Callable[[kr.Deployment], None]:
    def mutate(d):
        for m in mutations:
            m(d)
    return mutate


def _clear(path: str, name: str) -> Callable[[kr.Deployment], None]:
    def mutate(d):
        obj = d.spec
        for part in path.replace("]", "").replace("[", ".").split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        obj.ClearField(name)
    return mutate


def _param(value: str) -> list[kr.ActionParam]:
    return [kr.ActionParam(name="next_hop_mac", value="1"), kr.ActionParam(name="port", value=value)]


R = kr.PacketReplica
MC = kr.MeterConfig
VS_MEMBER = kr.ValueSetEntry.Member(match=[kr.FieldMatch(field="type", exact=kr.FieldMatch.Exact(value="0x800"))])

INVALID = {
    # action profile members
    "member of an unknown profile": (_set("action_profile_members[0].action_profile", "nope"),
                                     "spec.action_profile_members[0].action_profile"),
    "member id 0": (_set("action_profile_members[1].member_id", 0), "spec.action_profile_members[1].member_id"),
    "member id twice in a profile": (_set("action_profile_members[1].member_id", 1),
                                     "spec.action_profile_members[1].member_id"),
    "member action of no table of its profile": (
        _both(_set("action_profile_members[0].action", "flood"),
              lambda d: d.spec.action_profile_members[0].ClearField("params")),
        "spec.action_profile_members[0].action"),
    "member param too wide": (_set("action_profile_members[0].params[1].value", "512"),
                              "spec.action_profile_members[0].params[1].value"),
    "more members than the profile's size": (
        _wider(lambda d: d.spec.action_profile_members.extend(
            [kr.ProfileMember(action_profile="ecmp_selector", member_id=n, action="drop") for n in (3, 4)])),
        "spec.action_profile_members[3]"),
    # action selector groups
    "group id 0": (_set("action_profile_groups[0].group_id", 0), "spec.action_profile_groups[0].group_id"),
    "group id twice in a profile": (_add("action_profile_groups", action_profile="ecmp_selector", group_id=1),
                                    "spec.action_profile_groups[1].group_id"),
    "group member not in the spec": (_set("action_profile_groups[0].members[1].member_id", 9),
                                     "spec.action_profile_groups[0].members[1].member_id"),
    "group member twice": (_set("action_profile_groups[0].members[1].member_id", 1),
                           "spec.action_profile_groups[0].members[1].member_id"),
    "group over its own max_size": (_set("action_profile_groups[0].max_size", 1), "spec.action_profile_groups[0].members"),
    "group over the profile's max_group_size": (_wider(_set("action_profile_groups[0].members[0].weight", 4)),
                                                "spec.action_profile_groups[0].members"),
    "group max_size over max_group_size": (_wider(_set("action_profile_groups[0].max_size", 5)),
                                           "spec.action_profile_groups[0].max_size"),
    "group negative weight": (_set("action_profile_groups[0].members[0].weight", -1),
                              "spec.action_profile_groups[0].members[0].weight"),
    # table entries on the selector table and the direct ones
    "route to a group not in the spec": (_set("table_entries[0].group_id", 7), "spec.table_entries[0].group_id"),
    "route to a member not in the spec": (_set("table_entries[1].member_id", 7), "spec.table_entries[1].member_id"),
    "route with a direct action": (_both(_clear("table_entries[0]", "group_id"), _set("table_entries[0].action", "drop")),
                                   "spec.table_entries[0].action"),
    "route with a member and a group": (_set("table_entries[0].member_id", 1), "spec.table_entries[0].group_id"),
    "route without any action": (_clear("table_entries[0]", "group_id"), "spec.table_entries[0].action"),
    "one-shot action of another table": (
        _both(_clear("table_entries[0]", "group_id"),
              lambda d: d.spec.table_entries[0].action_set.add(action="flood")),
        "spec.table_entries[0].action_set[0].action"),
    "one-shot set on a selector programmed with groups": (
        _both(_clear("table_entries[1]", "member_id"),
              lambda d: d.spec.table_entries[1].action_set.add(action="drop")),
        "spec.table_entries[1].action_set"),
    "the same route twice": (lambda d: d.spec.table_entries.append(d.spec.table_entries[1]),
                             "spec.table_entries[5].match"),
    "the same match written another way": (
        lambda d: d.spec.table_entries.add().CopyFrom(kr.TableEntry(
            table="MpIngress.l2_flood", action="drop", match=[kr.FieldMatch(
                field="hdr.ethernet.dst", exact=kr.FieldMatch.Exact(value="0xffffffffffff"))])),
        "spec.table_entries[5].match"),
    "two default actions of a table": (lambda d: d.spec.table_entries.append(d.spec.table_entries[3]),
                                       "spec.table_entries[5].is_default_action"),
    "flood entry with a member": (_set("table_entries[2].member_id", 1), "spec.table_entries[2].member_id"),
    "flood entry with a meter config": (lambda d: d.spec.table_entries[2].meter_config.SetInParent(),
                                        "spec.table_entries[2].meter_config"),
    "route with counter data": (_set("table_entries[0].counter_data.packet_count", 1),
                                "spec.table_entries[0].counter_data"),
    "acl meter cir above pir": (_set("table_entries[4].meter_config.cir", 300000), "spec.table_entries[4].meter_config.cir"),
    "acl meter negative burst": (_set("table_entries[4].meter_config.pburst", -1),
                                 "spec.table_entries[4].meter_config.pburst"),
    "acl counter negative": (_set("table_entries[4].counter_data.packet_count", -5),
                             "spec.table_entries[4].counter_data.packet_count"),
    "default entry with a priority": (_set("table_entries[3].priority", 1), "spec.table_entries[3].priority"),
    # multicast groups
    "multicast group 0": (_set("multicast_groups[0].group_id", 0), "spec.multicast_groups[0].group_id"),
    "multicast group twice": (_add("multicast_groups", group_id=1), "spec.multicast_groups[1].group_id"),
    "multicast group beyond 16 bits": (_set("multicast_groups[0].group_id", 65536), "spec.multicast_groups[0].group_id"),
    "multicast port beyond 9 bits": (_set("multicast_groups[0].replicas[2].egress_port", 512),
                                     "spec.multicast_groups[0].replicas[2].egress_port"),
    "multicast replica twice": (_set("multicast_groups[0].replicas[2].egress_port", 1),
                                "spec.multicast_groups[0].replicas[2]"),
    # clone sessions
    "clone session 0": (_set("clone_sessions[0].session_id", 0), "spec.clone_sessions[0].session_id"),
    "clone session twice": (_add("clone_sessions", session_id=100), "spec.clone_sessions[1].session_id"),
    "clone port beyond 9 bits": (_set("clone_sessions[0].replicas[0].egress_port", 1000),
                                 "spec.clone_sessions[0].replicas[0].egress_port"),
    "clone replica twice": (lambda d: d.spec.clone_sessions[0].replicas.add(egress_port=4),
                            "spec.clone_sessions[0].replicas[1]"),
    "clone negative length": (_set("clone_sessions[0].packet_length_bytes", -1),
                              "spec.clone_sessions[0].packet_length_bytes"),
    # indexed meters
    "unknown meter": (_set("meter_entries[0].meter", "nope"), "spec.meter_entries[0].meter"),
    "direct meter by index": (_set("meter_entries[0].meter", "acl_meter"), "spec.meter_entries[0].meter"),
    "meter index beyond size": (_set("meter_entries[0].index", 512), "spec.meter_entries[0].index"),
    "meter cir above pir": (_set("meter_entries[0].config.cir", 5000), "spec.meter_entries[0].config.cir"),
    "meter negative cburst": (_set("meter_entries[0].config.cburst", -1), "spec.meter_entries[0].config.cburst"),
    "meter cell twice": (_add("meter_entries", meter="MpIngress.port_policer", index=1),
                         "spec.meter_entries[1].index"),
    # indexed counters
    "unknown counter": (_set("counter_entries[0].counter", "nope"), "spec.counter_entries[0].counter"),
    "direct counter by index": (_set("counter_entries[0].counter", "acl_counter"), "spec.counter_entries[0].counter"),
    "counter index negative": (_set("counter_entries[0].index", -1), "spec.counter_entries[0].index"),
    "bytes for a packet counter": (_set("counter_entries[0].data.byte_count", 64),
                                   "spec.counter_entries[0].data.byte_count"),
    "counter cell twice": (_add("counter_entries", counter="port_rx", index=1), "spec.counter_entries[1].index"),
    # registers
    "unknown register": (_add("register_entries", register="nope", value="1"), "spec.register_entries[0].register"),
    "register index beyond size": (_add("register_entries", register="last_seen_src", index=512, value="1"),
                                   "spec.register_entries[0].index"),
    "register value too wide": (_add("register_entries", register="last_seen_src", value="0x1ffffffff"),
                                "spec.register_entries[0].value"),
    "register cell twice": (_both(_add("register_entries", register="last_seen_src", index=2, value="1"),
                                  _add("register_entries", register="last_seen_src", index=2, value="2")),
                            "spec.register_entries[1].index"),
    # value sets
    "unknown value set": (_wider(_add("value_set_entries", value_set="nope")), "spec.value_set_entries[0].value_set"),
    "value set member too wide": (
        _wider(_add("value_set_entries", value_set="ethertypes", members=[kr.ValueSetEntry.Member(
            match=[kr.FieldMatch(field="type", exact=kr.FieldMatch.Exact(value="0x10000"))])])),
        "spec.value_set_entries[0].members[0].match[0].exact"),
    "value set over its size": (_wider(_add("value_set_entries", value_set="ethertypes", members=[VS_MEMBER] * 3)),
                                "spec.value_set_entries[0].members"),
    "value set twice": (_wider(_both(_add("value_set_entries", value_set="ethertypes"),
                                     _add("value_set_entries", value_set="MpParser.ethertypes"))),
                        "spec.value_set_entries[1].value_set"),
}

VALID = {
    "the example": lambda d: None,
    "a register write": _add("register_entries", register="last_seen_src", index=511, value="10.0.0.1"),
    "one-shot action sets on the selector table": _both(
        lambda d: [d.spec.ClearField(f) for f in ("action_profile_groups", "action_profile_members")],
        lambda d: [e.ClearField("group_id") or e.ClearField("member_id") for e in d.spec.table_entries[:2]],
        lambda d: d.spec.table_entries[0].action_set.add(action="set_next_hop", params=_param("1"), weight=3),
        lambda d: d.spec.table_entries[0].action_set.add(action="set_next_hop", params=_param("2")),
        lambda d: d.spec.table_entries[1].action_set.add(action="drop")),
    "a multicast group and a clone session of one id": _add("clone_sessions", session_id=1),
    "another cell of the counter": _add("counter_entries", counter="port_rx", index=2,
                                                     data=kr.CounterData(packet_count=3)),
    "a value set": _wider(_add("value_set_entries", value_set="ethertypes", members=[VS_MEMBER])),
    "an acl entry of the same match at another priority": lambda d: d.spec.table_entries.add().CopyFrom(
        kr.TableEntry(table="acl", match=d.spec.table_entries[4].match, priority=11, action="acl_deny")),
    "a group at the profile's max_group_size": _wider(_set("action_profile_groups[0].members[0].weight", 3)),
}


on_module_loop = pytest.mark.asyncio(loop_scope="module")  # the async tests share the module's front


@pytest.fixture(scope="module")
def module_etcd(tmp_path_factory):
    server = EtcdServer(data_dir=str(tmp_path_factory.mktemp("etcd"))).start()
    yield server
    server.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admitted(module_etcd):
    """Admission and the apiserver; the multipath pipeline and its wider twin stored. (client, store)"""
    f = await Front(module_etcd.endpoint, policy=Policy(namespaces=frozenset({"default"}))).start()
    async with AsyncClient(f.api) as c, st.Store(module_etcd.endpoint) as s:
        await c.create(_example()[0])
        await c.create(_wider_pipeline())
        yield c, s
    await f.stop()


@on_module_loop
@pytest.mark.parametrize("case", sorted(INVALID))
async def test_invalid_entity_is_refused_at_its_path(case, admitted):
    c, store = admitted
    before = await store.revision()
    mutate, field = INVALID[case]
    with pytest.raises(errors.InvalidArgument) as exc:
        await c.create(_deployment(mutate))
    assert field in [v.field for v in exc.value.violations], exc.value.violations
    assert await store.revision() == before, "a rejected request wrote to etcd"


@on_module_loop
@pytest.mark.parametrize("case", sorted(VALID))
async def test_valid_entities_are_accepted(case, admitted):
    c, store = admitted
    name = "ok-" + "".join(ch if ch.isalnum() else "-" for ch in case.lower()).strip("-")[:50]
    d = _deployment(VALID[case], name=name)
    created = await c.create(d)
    for field in ("action_profile_members", "action_profile_groups", "multicast_groups", "clone_sessions",
                  "table_entries", "meter_entries", "counter_entries", "register_entries", "value_set_entries"):
        assert list(getattr(created.spec, field)) == list(getattr(d.spec, field)), field


@on_module_loop
async def test_all_entity_violations_are_reported_at_once(admitted):
    c, _ = admitted
    d = _deployment(_both(_set("table_entries[0].group_id", 7), _set("multicast_groups[0].group_id", 0),
                          _set("counter_entries[0].index", 600), _set("action_profile_members[0].action", "fly")))
    with pytest.raises(errors.InvalidArgument) as exc:
        await c.create(d)
    assert {v.field for v in exc.value.violations} == {
        "spec.table_entries[0].group_id", "spec.multicast_groups[0].group_id", "spec.counter_entries[0].index",
        "spec.action_profile_members[0].action"}


@on_module_loop
async def test_a_source_pipeline_defers_entities_to_the_node(admitted):
    """No P4Info yet: the entities are checked by the node agent after the compile, as table entries are."""
    c, _ = admitted
    p, _ = _example()
    p.metadata.name = "multipath-src"
    p.spec.ClearField("artifacts")
    p.spec.source.CopyFrom(kr.P4Source(program=(ROOT / "examples/multipath/multipath.p4").read_text(),
                                       backend="p4c", arch="v1model", target="bmv2"))
    await c.create(p)
    d = _deployment(_both(_set("multicast_groups[0].group_id", 0), _set("meter_entries[0].meter", "nope"),
                          lambda d: setattr(d.spec, "pipeline", "multipath-src")), name="from-source")
    created = await c.create(d)
    assert created.spec.multicast_groups[0].group_id == 0


# -- the bounds count every entity (pure functions) ---------------------------------------------------

def _reviewed_pipeline() -> kr.Pipeline:
    p, violations = review_pipeline(_example()[0], Policy())
    assert violations == []
    return p


def test_the_example_converts_and_reviews_clean():
    p, d = _example()
    index = P4InfoIndex(parse_p4info(p.spec.artifacts.p4info))
    kinds = {path.split("[")[0] for path, _ in to_p4_entities(d.spec, index)}
    assert kinds == {"multicast_groups", "clone_sessions", "action_profile_members", "action_profile_groups",
                     "table_entries", "meter_entries", "counter_entries"}
    assert not d.spec.register_entries  # BMv2 refuses register writes
    _, out = review_deployment(d, _reviewed_pipeline(), Policy())
    assert out == []


def test_review_time_budget_spans_every_kind():
    _, d = _example()
    _, out = review_deployment(d, _reviewed_pipeline(), Policy(max_review_seconds=0))
    assert [v.field for v in out] == ["spec.multicast_groups"]  # the first kind converted
    assert "review stopped" in out[0].description and f"entry 0 of {entity_count(d.spec)}" in out[0].description


def test_object_size_names_the_largest_entity_list():
    _, d = _example()
    d.spec.multicast_groups[0].replicas.extend([R(egress_port=p % 512, instance=p // 512) for p in range(2000)])
    _, out = review_deployment(d, _reviewed_pipeline(), Policy(max_object_bytes=8000))
    assert "spec.multicast_groups" in [v.field for v in out]


def test_the_entry_quota_counts_every_entity():
    _, d = _example()
    n = entity_count(d.spec)
    assert n == 12 and len(d.spec.table_entries) == 5
    usage = ka.NamespaceUsage()
    assert quota_violations(d, usage, True, Policy(max_table_entries=n)) == []
    [v] = quota_violations(d, usage, True, Policy(max_table_entries=n - 1))
    assert v.field == "spec.table_entries" and f"requested: deployment.table_entries={n}" in v.description


@pytest.mark.parametrize("mutate,field", [
    (lambda i: setattr(i.registers[0].type_spec.bitstring.bit, "bitwidth", 1 << 20),
     "spec.artifacts.p4info.registers[0].type_spec.bitstring"),
    (lambda i: setattr(i.direct_meters[0].preamble, "id", i.meters[0].preamble.id),
     "spec.artifacts.p4info.direct_meters[0].preamble.id"),
])
def test_a_p4info_whose_entities_could_not_be_checked_is_refused(mutate, field):
    """A register's width bounds its values' cost; ids must be unique for by-id lookups."""
    p, _ = _example()
    info = parse_p4info(p.spec.artifacts.p4info)
    mutate(info)
    p.spec.artifacts.p4info = info.SerializeToString()
    _, out = review_pipeline(p, Policy())
    assert field in [v.field for v in out], out
