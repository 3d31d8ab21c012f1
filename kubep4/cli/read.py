"""`kubep4 counters` and `kubep4 read`: a deployment's live values, read from its devices now.

A table per replica (its node and device); a replica whose node or device did not answer shows
its error instead, and the command exits 1 after printing what the others answered.
"""
from __future__ import annotations

import json
import sys

import yaml
from google.protobuf import json_format

from kubep4 import errors
from kubep4.client import kind_of
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import resources_pb2 as kr

KINDS = ("counter", "meter", "register", "table", "action_profile", "multicast", "clone_session")


def register(sub) -> None:
    c = sub.add_parser("counters", help="a deployment's indexed counters, read from its devices now")
    c.add_argument("kind", metavar="deployment", help="deployment (what is read: its replicas)")
    c.add_argument("name")
    c.add_argument("--counter", default="", help="one counter, by its P4Info name or alias (default: all)")
    _common(c)
    c.set_defaults(fn=cmd_counters)
    r = sub.add_parser("read", help="a deployment's live values (counters, meters, registers, table entries...), "
                                    "read from its devices now")
    r.add_argument("kind", metavar="deployment", help="deployment (what is read: its replicas)")
    r.add_argument("name")
    r.add_argument("--kind", dest="what", required=True, choices=KINDS, help="what to read")
    r.add_argument("--name", dest="object_name", default="",
                   help="one counter, meter, register, table or action profile by its P4Info name (default: all)")
    _common(r)
    r.set_defaults(fn=cmd_read)


def _common(sp) -> None:
    sp.add_argument("-n", "--namespace", default="", help="namespace (default: default)")
    sp.add_argument("-o", "--output", choices=["json", "yaml"], help="the whole answer, every cell")
    sp.add_argument("--all", action="store_true", help="also the cells at zero (counters, meters, registers)")


def cmd_counters(c, args) -> int:
    return _show(c, args, "counter", args.counter)


def cmd_read(c, args) -> int:
    return _show(c, args, args.what, args.object_name)


def _show(c, args, what: str, object_name: str) -> int:
    if kind_of(args.kind) != "deployment":
        raise errors.InvalidArgument("only deployments can be read (kubep4 read deployment NAME ...)")
    resp = c.read_deployment(args.name, what, object_name or None, args.namespace or "default")
    if args.output:
        doc = json_format.MessageToDict(resp, always_print_fields_with_no_presence=True)
        if args.output == "json":
            print(json.dumps(doc, indent=2))
        else:
            print(yaml.safe_dump(doc, sort_keys=False), end="")
    else:
        print(render(resp, what, args.all))
    if not resp.replicas:
        print(f"deployment {args.name} has no replicas placed", file=sys.stderr)
    failed = [r for r in resp.replicas if r.error]
    return 1 if failed else 0


def render(resp: api.ReadDeploymentResponse, what: str, show_all: bool = False) -> str:
    """One block per replica: a header line (replica, node/device), then its table or its error."""
    from kubep4.cli.main import _table
    blocks = []
    for r in resp.replicas:
        head = f"replica {r.replica}  {r.node or '-'}/{r.device or '-'}"
        if r.error:
            blocks.append(f"{head}\n  error ({r.reason or 'ReadFailed'}): {r.error}")
            continue
        rows, hidden = _rows(what, r.values, show_all)
        if len(rows) > 1:
            body = _table(rows) + (f"\n  ({hidden} cells at zero not shown; --all shows them)" if hidden else "")
        elif hidden:
            body = f"  (all {hidden} cells are zero; --all shows them)"
        else:
            body = f"  (no {what.replace('_', ' ')} values)"
        blocks.append(f"{head}\n{body}")
    return "\n\n".join(blocks)


def _match(fm: kr.FieldMatch) -> str:
    kind = fm.WhichOneof("kind")
    if kind == "exact":
        return f"{fm.field}={fm.exact.value}"
    if kind == "lpm":
        return f"{fm.field}={fm.lpm.value}/{fm.lpm.prefix_len}"
    if kind == "ternary":
        return f"{fm.field}={fm.ternary.value}&&&{fm.ternary.mask}"
    if kind == "range":
        return f"{fm.field}={fm.range.low}..{fm.range.high}"
    if kind == "optional":
        return f"{fm.field}={fm.optional.value}"
    return fm.field


def _action(e: kr.TableEntry) -> str:
    if e.member_id:
        return f"member {e.member_id}"
    if e.group_id:
        return f"group {e.group_id}"
    if e.action_set:
        return "; ".join(f"{a.action}({', '.join(f'{p.name}={p.value}' for p in a.params)})x{a.weight or 1}"
                         for a in e.action_set)
    return f"{e.action}({', '.join(f'{p.name}={p.value}' for p in e.params)})"


def _replicas(replicas) -> str:
    return ",".join(f"{x.egress_port}:{x.instance}" for x in replicas) or "-"


def _rows(what: str, v: api.DeviceValues, show_all: bool) -> tuple[list[list[str]], int]:
    """The table of one replica's values, and how many zero cells were left out."""
    hidden = 0

    def keep(nonzero: bool) -> bool:
        nonlocal hidden
        if nonzero or show_all:
            return True
        hidden += 1
        return False

    if what == "counter":
        rows = [["COUNTER", "INDEX", "PACKETS", "BYTES"]] + [
            [c.counter, str(c.index), str(c.data.packet_count), str(c.data.byte_count)] for c in v.counters
            if keep(bool(c.data.packet_count or c.data.byte_count))]
    elif what == "meter":
        rows = [["METER", "INDEX", "CIR", "CBURST", "PIR", "PBURST"]] + [
            [m.meter, str(m.index), str(m.config.cir), str(m.config.cburst), str(m.config.pir),
             str(m.config.pburst)] for m in v.meters if keep(m.config != kr.MeterConfig())]
    elif what == "register":
        rows = [["REGISTER", "INDEX", "VALUE"]] + [
            [r.register, str(r.index), r.value] for r in v.registers if keep(r.value not in ("", "0"))]
    elif what == "table":
        rows = [["TABLE", "MATCH", "PRIORITY", "ACTION", "PACKETS", "BYTES"]] + [
            [e.table + (" (default)" if e.is_default_action else ""), " ".join(map(_match, e.match)) or "-",
             str(e.priority) if e.priority else "-", _action(e),
             str(e.counter_data.packet_count) if e.HasField("counter_data") else "-",
             str(e.counter_data.byte_count) if e.HasField("counter_data") else "-"] for e in v.table_entries]
    elif what == "action_profile":
        rows = [["PROFILE", "MEMBER", "GROUP", "ACTION / MEMBERS"]] + [
            [m.action_profile, str(m.member_id), "-", f"{m.action}({', '.join(f'{p.name}={p.value}' for p in m.params)})"]
            for m in v.action_profile_members] + [
            [g.action_profile, "-", str(g.group_id), ", ".join(f"{m.member_id}x{m.weight or 1}" for m in g.members)]
            for g in v.action_profile_groups]
    elif what == "multicast":
        rows = [["GROUP", "REPLICAS (PORT:INSTANCE)"]] + [
            [str(g.group_id), _replicas(g.replicas)] for g in v.multicast_groups]
    else:
        rows = [["SESSION", "REPLICAS (PORT:INSTANCE)", "CLASS OF SERVICE", "PACKET LENGTH"]] + [
            [str(s.session_id), _replicas(s.replicas), str(s.class_of_service), str(s.packet_length_bytes or "whole")]
            for s in v.clone_sessions]
    return rows, hidden
