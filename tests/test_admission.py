"""Every admission rule, through the real apiserver: INVALID_ARGUMENT with the field path, nothing written."""
from __future__ import annotations

from collections.abc import Callable

import pytest
import pytest_asyncio

from kubep4 import errors
from kubep4 import store as st
from kubep4.client import AsyncClient
from kubep4.etcd_server import EtcdServer
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import parse_p4info
from services.admission.validation import Policy

from .conftest import Front, example_objects


def _pipeline(mutate: Callable[[kr.Pipeline], None]) -> kr.Pipeline:
    p = example_objects()[0]
    p.metadata.name = "other"
    mutate(p)
    return p


def _p4info(mutate) -> bytes:
    info = parse_p4info(example_objects()[0].spec.artifacts.p4info)
    mutate(info)
    return info.SerializeToString()


def _info(fn) -> Callable[[kr.Pipeline], None]:
    """A pipeline mutation that changes its P4Info."""
    return lambda p: setattr(p.spec.artifacts, "p4info", _p4info(fn))


DEEP_P4INFO = ('type_info { structs { key: "s" value { members { name: "m" type_spec { '
               + "tuple { members { " * 400 + "} } " * 400 + "} } } } }").encode()


def _source(p: kr.Pipeline, **kw) -> None:
    p.spec.ClearField("artifacts")
    p.spec.source.CopyFrom(kr.P4Source(program="control c() {}", backend="p4c", arch="v1model", target="bmv2"))
    for k, v in kw.items():
        if isinstance(v, list):
            getattr(p.spec.source, k).extend(v)
        else:
            setattr(p.spec.source, k, v)


PIPELINE_CASES = {
    "name required": (lambda p: p.metadata.ClearField("name"), "metadata.name"),
    "name not DNS-1123": (lambda p: setattr(p.metadata, "name", "Bad_Name"), "metadata.name"),
    "unknown namespace": (lambda p: setattr(p.metadata, "namespace", "nowhere"), "metadata.namespace"),
    "bad label key": (lambda p: p.metadata.labels.__setitem__("-x", "y"), "metadata.labels[-x]"),
    "bad label value": (lambda p: p.metadata.labels.__setitem__("x", "no spaces"), "metadata.labels[x]"),
    "no program": (lambda p: p.spec.ClearField("artifacts"), "spec"),
    "p4info missing": (lambda p: setattr(p.spec.artifacts, "p4info", b""), "spec.artifacts.p4info"),
    "p4info unparseable": (lambda p: setattr(p.spec.artifacts, "p4info", b"tables { nonsense"),
                           "spec.artifacts.p4info"),
    "p4info empty program": (lambda p: setattr(p.spec.artifacts, "p4info", b"pkg_info { arch: 'v1model' }"),
                             "spec.artifacts.p4info"),
    "p4info duplicate ids": (lambda p: setattr(p.spec.artifacts, "p4info", _p4info(
        lambda i: setattr(i.actions[1].preamble, "id", i.actions[0].preamble.id))),
        "spec.artifacts.p4info.actions[1].preamble.id"),
    "table references unknown action": (lambda p: setattr(p.spec.artifacts, "p4info", _p4info(
        lambda i: setattr(i.tables[0].action_refs[0], "id", 12345))),
        "spec.artifacts.p4info.tables[0].action_refs[0].id"),
    "device config empty": (lambda p: setattr(p.spec.artifacts, "device_config", b""),
                            "spec.artifacts.device_config"),
    "device config too large": (lambda p: setattr(p.spec.artifacts, "device_config", b"x" * 70_000),
                                "spec.artifacts.device_config"),
    "unknown target": (lambda p: setattr(p.spec, "target", "asic9000"), "spec.target"),
    "unknown arch": (lambda p: setattr(p.spec, "arch", "nosucharch"), "spec.arch"),
    "source program empty": (lambda p: _source(p, program=" "), "spec.source.program"),
    "unknown backend": (lambda p: _source(p, backend="gcc"), "spec.source.backend"),
    # compiler options are an allowlist: nothing that names a file, the target or the arch
    "option writes a file": (lambda p: _source(p, options=["-DX=1", "-o", "/etc"]), "spec.source.options[1]"),
    "option reads a directory": (lambda p: _source(p, options=["-I/root"]), "spec.source.options[0]"),
    "option dumps the IR": (lambda p: _source(p, options=["--Wwarn", "--dump=/tmp/x"]), "spec.source.options[1]"),
    "option from a response file": (lambda p: _source(p, options=["@/etc/passwd"]), "spec.source.options[0]"),
    "option picks the target": (lambda p: _source(p, options=["--target=tofino"]), "spec.source.options[0]"),
    # admission bounds its own work: the width of every value, the size and nesting of the P4Info
    "field 2^31-1 bits wide": (_info(lambda i: setattr(i.tables[0].match_fields[0], "bitwidth", 2**31 - 1)),
                               "spec.artifacts.p4info.tables[0].match_fields[0].bitwidth"),
    "field past the width bound": (_info(lambda i: setattr(i.tables[0].match_fields[0], "bitwidth", 2049)),
                                   "spec.artifacts.p4info.tables[0].match_fields[0].bitwidth"),
    "negative param width": (_info(lambda i: setattr(i.actions[1].params[1], "bitwidth", -9)),
                             "spec.artifacts.p4info.actions[1].params[1].bitwidth"),
    "match field id 0": (_info(lambda i: setattr(i.tables[0].match_fields[0], "id", 0)),
                         "spec.artifacts.p4info.tables[0].match_fields[0].id"),
    "param id 0": (_info(lambda i: setattr(i.actions[1].params[0], "id", 0)),
                   "spec.artifacts.p4info.actions[1].params[0].id"),
    "unspecified match type": (_info(lambda i: setattr(i.tables[1].match_fields[2], "match_type", 0)),
                               "spec.artifacts.p4info.tables[1].match_fields[2].match_type"),
    "empty match field name": (_info(lambda i: setattr(i.tables[0].match_fields[0], "name", "")),
                               "spec.artifacts.p4info.tables[0].match_fields[0].name"),
    "empty param name": (_info(lambda i: setattr(i.actions[1].params[0], "name", "")),
                         "spec.artifacts.p4info.actions[1].params[0].name"),
    "arch differs from pkg_info.arch": (lambda p: setattr(p.spec, "arch", "psa"), "spec.arch"),
    "text p4info nested 400 deep": (lambda p: setattr(p.spec.artifacts, "p4info", DEEP_P4INFO),
                                    "spec.artifacts.p4info"),
    "p4info too large": (lambda p: setattr(p.spec.artifacts, "p4info", p.spec.artifacts.p4info
                                           + b"\n# padding" * 8000), "spec.artifacts.p4info"),
}


def _deployment(mutate: Callable[[kr.Deployment], None]) -> kr.Deployment:
    d = example_objects()[1]
    d.metadata.name = "other"
    mutate(d)
    return d


def _entry(i: int, fn):
    return lambda d: fn(d.spec.table_entries[i])


def _param(i: int, j: int, value: str):
    """A case: param j of entry i set to value, refused at that param's path."""
    return _entry(i, lambda e: setattr(e.params[j], "value", value)), f"spec.table_entries[{i}].params[{j}].value"


def _expr(key="zone", op="In", values=("a",)):
    return lambda d: d.spec.selector.match_expressions.add(key=key, operator=op, values=list(values))


DEPLOYMENT_CASES = {
    "replicas too many": (lambda d: setattr(d.spec, "replicas", 1000), "spec.replicas"),
    "replicas negative": (lambda d: setattr(d.spec, "replicas", -1), "spec.replicas"),
    "unknown strategy": (lambda d: setattr(d.spec.strategy, "type", "BlueGreen"), "spec.strategy.type"),
    "selector bad key": (lambda d: d.spec.selector.match_labels.__setitem__("bad key", "x"),
                         "spec.selector.match_labels[bad key]"),
    "selector unknown operator": (_expr(op="Near"), "spec.selector.match_expressions[0].operator"),
    "selector In without values": (_expr(values=()), "spec.selector.match_expressions[0].values"),
    "selector Exists with values": (_expr(op="Exists"), "spec.selector.match_expressions[0].values"),
    "pipeline required": (lambda d: d.spec.ClearField("pipeline"), "spec.pipeline"),
    "pipeline not found": (lambda d: setattr(d.spec, "pipeline", "missing"), "spec.pipeline"),
    "target differs from pipeline": (lambda d: setattr(d.spec, "target", "tofino"), "spec.target"),
    "arch differs from pipeline": (lambda d: setattr(d.spec, "arch", "psa"), "spec.arch"),
    "unknown table": (_entry(0, lambda e: setattr(e, "table", "nope")), "spec.table_entries[0].table"),
    "unknown match field": (_entry(0, lambda e: setattr(e.match[0], "field", "hdr.nope")),
                            "spec.table_entries[0].match[0].field"),
    "wrong match kind": (_entry(0, lambda e: e.match[0].exact.CopyFrom(kr.FieldMatch.Exact(value="1"))),
                         "spec.table_entries[0].match[0].exact"),
    "value does not parse": (_entry(0, lambda e: setattr(e.match[0].lpm, "value", "ten")),
                             "spec.table_entries[0].match[0].lpm"),
    "prefix too long": (_entry(0, lambda e: setattr(e.match[0].lpm, "prefix_len", 33)),
                        "spec.table_entries[0].match[0].lpm.prefix_len"),
    "exact field missing": (_entry(2, lambda e: e.match.pop()), "spec.table_entries[2].match"),
    "priority missing": (_entry(2, lambda e: setattr(e, "priority", 0)), "spec.table_entries[2].priority"),
    "priority not allowed": (_entry(0, lambda e: setattr(e, "priority", 5)), "spec.table_entries[0].priority"),
    "unknown action": (_entry(0, lambda e: setattr(e, "action", "fly")), "spec.table_entries[0].action"),
    "action of another table": (_entry(0, lambda e: setattr(e, "action", "BasicIngress.allow")),
                                "spec.table_entries[0].action"),
    "unknown param": (_entry(0, lambda e: setattr(e.params[0], "name", "color")),
                      "spec.table_entries[0].params[0].name"),
    "missing param": (_entry(0, lambda e: e.params.pop()), "spec.table_entries[0].params"),
    "param too wide": (_entry(0, lambda e: setattr(e.params[1], "value", "512")),
                       "spec.table_entries[0].params[1].value"),
    "too large for etcd": (lambda d: d.spec.table_entries.extend([d.spec.table_entries[0]] * 9000),
                           "spec.table_entries"),
    "ternary value too wide": (_entry(2, lambda e: setattr(e.match[0].ternary, "value", "1.2.3.4.5")),
                               "spec.table_entries[2].match[0].ternary"),
    # strict value syntax: ASCII digits, no spaces, address forms only where the field fits them
    "non-ASCII digit": _param(0, 1, "\u0663"),
    "surrounding spaces": _param(0, 1, " 1 "),
    "hex with underscores": _param(0, 1, "0x0_1"),
    "MAC in a 32-bit field": _param(2, 0, "00:00:00:00:00:07"),
    "MAC octet of one digit": _param(0, 0, "0:0:0:0:1:1"),
    "IPv6 in a 32-bit field": (_entry(0, lambda e: setattr(e.match[0].lpm, "value", "::1")),
                               "spec.table_entries[0].match[0].lpm"),
    "IPv4 in a 9-bit field": (_entry(2, lambda e: setattr(e.match[1].exact, "value", "0.0.0.3")),
                              "spec.table_entries[2].match[1].exact"),
}


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def module_etcd(tmp_path_factory):
    server = EtcdServer(data_dir=str(tmp_path_factory.mktemp("etcd"))).start()
    yield server
    server.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admitted(module_etcd):
    """One front half for the module (device configs limited to 64 kB); the example pipeline stored.
    Yields (client, store)."""
    f = await Front(module_etcd.endpoint, policy=Policy(namespaces=frozenset({"default"}),
                                                        max_device_config_bytes=64_000,
                                                        max_p4info_bytes=64_000)).start()
    async with AsyncClient(f.api) as c, st.Store(module_etcd.endpoint) as s:
        await c.create(example_objects()[0])
        yield c, s
    await f.stop()


@pytest.mark.parametrize("case", sorted(PIPELINE_CASES))
async def test_pipeline_rule(case, admitted):
    c, store = admitted
    before = await store.revision()
    mutate, field = PIPELINE_CASES[case]
    with pytest.raises(errors.InvalidArgument) as exc:
        await c.create(_pipeline(mutate))
    assert field in [v.field for v in exc.value.violations], exc.value.violations
    assert await store.revision() == before, "a rejected request wrote to etcd"


@pytest.mark.parametrize("case", sorted(DEPLOYMENT_CASES))
async def test_deployment_rule(case, admitted):
    c, store = admitted
    before = await store.revision()
    mutate, field = DEPLOYMENT_CASES[case]
    with pytest.raises(errors.InvalidArgument) as exc:
        await c.create(_deployment(mutate))
    assert field in [v.field for v in exc.value.violations], exc.value.violations
    assert await store.revision() == before, "a rejected request wrote to etcd"
    items, _ = await store.list(st.DEPLOYMENTS)
    assert "other" not in [d.metadata.name for d in items]


async def test_all_violations_reported_at_once(admitted):
    c, _ = admitted

    def many(d):
        d.metadata.name = "UPPER"
        d.spec.replicas = 999
        d.spec.table_entries[0].action = "fly"
    with pytest.raises(errors.InvalidArgument) as exc:
        await c.create(_deployment(many))
    assert {v.field for v in exc.value.violations} >= {"metadata.name", "spec.replicas",
                                                       "spec.table_entries[0].action"}


async def test_defaults(admitted):
    c, _ = admitted
    d = _deployment(lambda d: (d.spec.ClearField("replicas"), d.metadata.ClearField("namespace")))
    d.metadata.name = "defaults"
    created = await c.create(d)
    assert created.metadata.namespace == "default"
    assert created.spec.replicas == 1
    assert created.spec.strategy.type == "Recreate"
    assert (created.spec.target, created.spec.arch) == ("bmv2", "v1model")


async def test_entries_on_a_stored_pipeline_with_a_2_31_bit_field_are_refused_by_the_width_bound(admitted):
    """A pipeline stored before the bound (straight into etcd): its entries are not converted at all."""
    c, store = admitted
    wide = _pipeline(lambda p: setattr(p.spec.artifacts, "p4info", _p4info(
        lambda i: setattr(i.tables[0].match_fields[0], "bitwidth", 2**31 - 1))))
    wide.metadata.name, wide.metadata.namespace = "wide", "default"
    await store.create_pipeline(wide)
    before = await store.revision()
    d = _deployment(lambda d: setattr(d.spec, "pipeline", "wide"))
    d.spec.table_entries.extend([d.spec.table_entries[0]] * 40)
    with pytest.raises(errors.InvalidArgument) as exc:
        await c.create(d)
    [v] = [v for v in exc.value.violations if v.field == "spec.pipeline"]
    assert "tables[0].match_fields[0].bitwidth" in v.description
    assert not any(v.field.startswith("spec.table_entries") for v in exc.value.violations)
    assert await store.revision() == before


async def test_many_violations_are_cut_with_a_count_of_the_rest(admitted):
    c, store = admitted
    before = await store.revision()
    d = _deployment(lambda d: None)
    d.spec.table_entries[0].action = "fly" * 100
    d.spec.table_entries.extend([d.spec.table_entries[0]] * 599)  # 600 bad entries, 1 good

    with pytest.raises(errors.InvalidArgument) as exc:
        await c.create(d)
    vs = exc.value.violations
    assert errors.count(vs) == 600
    assert vs[-1].field == errors.MORE and vs[-1].description.split()[0] == str(600 - (len(vs) - 1))
    assert all(len(v.description) < 400 and len(v.field) < 200 for v in vs)
    assert len(exc.value.message) < 1000 and "600 violation(s)" in exc.value.message
    assert await store.revision() == before


async def test_a_10000_character_name_gets_a_short_deliverable_answer(admitted):
    c, store = admitted
    before = await store.revision()
    p = _pipeline(lambda p: setattr(p.metadata, "name", "x" * 10_000))
    p.metadata.labels["k" * 5000] = "v" * 5000
    with pytest.raises(errors.InvalidArgument) as exc:
        await c.create(p)
    fields = [v.field for v in exc.value.violations]
    assert "metadata.name" in fields
    assert all(len(v.description) < 400 and len(v.field) < 200 for v in exc.value.violations)
    assert "10000 characters" in str(exc.value)
    assert await store.revision() == before

