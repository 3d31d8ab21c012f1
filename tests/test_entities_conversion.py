"""kubep4.entities.to_p4_entities / from_p4_entity on the multipath example's real P4Info: every
kind's valid form becomes exactly the P4Runtime message a device takes, every invalid form is
refused with its path inside the spec, and what a device reads back turns into the KubeP4 message."""
from __future__ import annotations

import pytest
from google.protobuf import text_format

from kubep4.entities import ENTITY_FIELDS, MODIFY_ONLY, from_p4_entity, kind_of, to_p4_entities
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.p4 import EntryError, P4InfoIndex, p4i, p4r, parse_p4info, to_p4_entry

from .conftest import ROOT

P4INFO = ROOT / "examples" / "multipath" / "multipath.p4info.txtpb"

# the multipath P4Info's ids
ROUTE, FLOOD_TABLE, ACL = 47578296, 38453817, 49707779
SET_NEXT_HOP, DROP, TO_CPU, FLOOD, MIRROR, ACL_ALLOW, NO_ACTION = (
    17400875, 33105478, 31857057, 29943696, 23721251, 25045178, 21257015)
SELECTOR, PORT_RX, PORT_POLICER, LAST_SEEN = 292865179, 308926606, 347916127, 383566358
VALUE_SET = 55555555  # added by the tests: no example program has one

MEMBER = ('action_profile: "ecmp_selector" member_id: 1 action: "set_next_hop" '
          'params { name: "next_hop_mac" value: "00:00:00:00:01:01" } params { name: "port" value: "1" }')
ROUTE_MATCH = 'table: "ipv4_route" match { field: "hdr.ipv4.dst" lpm { value: "10.0.0.0" prefix_len: 8 } }'
ROUTE_MATCH_P4 = f'table_id: {ROUTE} match {{ field_id: 1 lpm {{ value: "\\n\\000\\000\\000" prefix_len: 8 }} }}'


def _p4info(mutate=None) -> p4i.P4Info:
    info = parse_p4info(P4INFO.read_text())
    vs = info.value_sets.add(size=2)
    vs.preamble.id, vs.preamble.name, vs.preamble.alias = VALUE_SET, "MpParser.ethertypes", "ethertypes"
    vs.match.add(id=1, name="type", bitwidth=16, match_type=p4i.MatchField.EXACT)
    if mutate:
        mutate(info)
    return info


INDEX = P4InfoIndex(_p4info())


def _spec(text: str) -> kr.DeploymentSpec:
    return text_format.Parse(text, kr.DeploymentSpec())


def _entity(text: str) -> p4r.Entity:
    return text_format.Parse(text, p4r.Entity())


VALID = {
    "member": (f"action_profile_members {{ {MEMBER} }}",
               f'action_profile_member {{ action_profile_id: {SELECTOR} member_id: 1 action {{ action_id: '
               f'{SET_NEXT_HOP} params {{ param_id: 1 value: "\\001\\001" }} params {{ param_id: 2 value: "\\001" }} }} }}'),
    "member by full names": ('action_profile_members { action_profile: "MpIngress.ecmp_selector" member_id: 7 '
                             'action: "MpIngress.drop" }',
                             f"action_profile_member {{ action_profile_id: {SELECTOR} member_id: 7 "
                             f"action {{ action_id: {DROP} }} }}"),
    "group, weight 0 means 1": ('action_profile_groups { action_profile: "ecmp_selector" group_id: 10 '
                                'members { member_id: 1 } members { member_id: 2 weight: 3 } max_size: 8 }',
                                f"action_profile_group {{ action_profile_id: {SELECTOR} group_id: 10 "
                                "members { member_id: 1 weight: 1 } members { member_id: 2 weight: 3 } max_size: 8 }"),
    "route to a group": (f"table_entries {{ {ROUTE_MATCH} group_id: 10 }}",
                         f"table_entry {{ {ROUTE_MATCH_P4} action {{ action_profile_group_id: 10 }} }}"),
    "route to a member": (f"table_entries {{ {ROUTE_MATCH} member_id: 1 }}",
                          f"table_entry {{ {ROUTE_MATCH_P4} action {{ action_profile_member_id: 1 }} }}"),
    "route with a one-shot set": (
        f'table_entries {{ {ROUTE_MATCH} action_set {{ action: "drop" }} action_set {{ action: "set_next_hop" '
        'params { name: "next_hop_mac" value: "0x2" } params { name: "port" value: "2" } weight: 2 } }',
        f"table_entry {{ {ROUTE_MATCH_P4} action {{ action_profile_action_set {{ "
        f"action_profile_actions {{ action {{ action_id: {DROP} }} weight: 1 }} "
        f'action_profile_actions {{ action {{ action_id: {SET_NEXT_HOP} params {{ param_id: 1 value: "\\002" }} '
        'params { param_id: 2 value: "\\002" } } weight: 2 } } } }'),
    "flood default action": ('table_entries { table: "l2_flood" is_default_action: true action: "flood" '
                             'params { name: "group" value: "1" } }',
                             f"table_entry {{ table_id: {FLOOD_TABLE} is_default_action: true action {{ action {{ "
                             f'action_id: {FLOOD} params {{ param_id: 1 value: "\\001" }} }} }} }}'),
    "acl with direct meter and counter": (
        'table_entries { table: "acl" match { field: "hdr.ipv4.src" ternary { value: "10.0.0.1" '
        'mask: "255.255.255.255" } } priority: 10 action: "mirror" params { name: "session" value: "5" } '
        "meter_config { cir: 1000 cburst: 100 pir: 2000 pburst: 200 } counter_data { byte_count: 3 packet_count: 1 } }",
        f'table_entry {{ table_id: {ACL} match {{ field_id: 1 ternary {{ value: "\\n\\000\\000\\001" '
        f'mask: "\\377\\377\\377\\377" }} }} priority: 10 action {{ action {{ action_id: {MIRROR} params {{ '
        'param_id: 1 value: "\\005" } } } meter_config { cir: 1000 cburst: 100 pir: 2000 pburst: 200 } '
        "counter_data { byte_count: 3 packet_count: 1 } }"),
    "multicast group": ("multicast_groups { group_id: 1 replicas { egress_port: 1 } replicas { egress_port: 2 } "
                        "replicas { egress_port: 2 instance: 1 } replicas { egress_port: 511 } }",
                        "packet_replication_engine_entry { multicast_group_entry { multicast_group_id: 1 "
                        "replicas { egress_port: 1 } replicas { egress_port: 2 } replicas { egress_port: 2 instance: 1 } "
                        "replicas { egress_port: 511 } } }"),
    "multicast group without replicas": ("multicast_groups { group_id: 65535 }",
                                         "packet_replication_engine_entry { multicast_group_entry { "
                                         "multicast_group_id: 65535 } }"),
    "clone session": ("clone_sessions { session_id: 5 replicas { egress_port: 255 } class_of_service: 2 "
                      "packet_length_bytes: 128 }",
                      "packet_replication_engine_entry { clone_session_entry { session_id: 5 replicas { "
                      "egress_port: 255 } class_of_service: 2 packet_length_bytes: 128 } }"),
    "meter entry": ('meter_entries { meter: "port_policer" index: 511 config { cir: 10 cburst: 5 pir: 10 pburst: 5 } }',
                    f"meter_entry {{ meter_id: {PORT_POLICER} index {{ index: 511 }} config {{ cir: 10 cburst: 5 "
                    "pir: 10 pburst: 5 } }"),
    "meter entry reset (no config)": ('meter_entries { meter: "port_policer" index: 0 }',
                                      f"meter_entry {{ meter_id: {PORT_POLICER} index {{ }} }}"),
    "counter entry": ('counter_entries { counter: "port_rx" index: 7 data { packet_count: 42 } }',
                      f"counter_entry {{ counter_id: {PORT_RX} index {{ index: 7 }} data {{ packet_count: 42 }} }}"),
    "counter entry reset (no data)": ('counter_entries { counter: "MpIngress.port_rx" index: 1 }',
                                      f"counter_entry {{ counter_id: {PORT_RX} index {{ index: 1 }} data {{ }} }}"),
    "register entry": ('register_entries { register: "last_seen_src" index: 3 value: "10.0.0.1" }',
                       f'register_entry {{ register_id: {LAST_SEEN} index {{ index: 3 }} data {{ '
                       'bitstring: "\\n\\000\\000\\001" } }'),
    "register zero": ('register_entries { register: "last_seen_src" index: 0 value: "0" }',
                      f'register_entry {{ register_id: {LAST_SEEN} index {{ }} data {{ bitstring: "\\000" }} }}'),
    "value set": ('value_set_entries { value_set: "ethertypes" members { match { field: "type" exact { value: "0x0800" } } } '
                  'members { match { field: "type" exact { value: "34525" } } } }',
                  f'value_set_entry {{ value_set_id: {VALUE_SET} members {{ match {{ field_id: 1 exact {{ '
                  'value: "\\010\\000" } } } members { match { field_id: 1 exact { value: "\\206\\335" } } } }'),
    "empty value set": ('value_set_entries { value_set: "MpParser.ethertypes" }',
                        f"value_set_entry {{ value_set_id: {VALUE_SET} }}"),
}


@pytest.mark.parametrize("case", sorted(VALID))
def test_valid_form_converts_to_the_exact_p4runtime_entity(case):
    spec_text, expected = VALID[case]
    [(path, entity)] = to_p4_entities(_spec(spec_text), INDEX)
    assert entity == _entity(expected), text_format.MessageToString(entity)
    field = spec_text.split(" ", 1)[0]
    assert path == f"{field}[0]"
    assert kind_of(entity) == field


ACL_ENTRY = 'table: "acl" priority: 1 action: "acl_allow"'

INVALID = {
    # action profile members
    "member of an unknown profile": (f"action_profile_members {{ {MEMBER.replace('ecmp_selector', 'nope')} }}",
                                     "action_profile_members[0].action_profile"),
    "member without an id": (f"action_profile_members {{ {MEMBER.replace('member_id: 1', '')} }}",
                             "action_profile_members[0].member_id"),
    "member's action not of its profile's tables": (
        'action_profile_members { action_profile: "ecmp_selector" member_id: 1 action: "flood" '
        'params { name: "group" value: "1" } }', "action_profile_members[0].action"),
    "member's unknown action": ('action_profile_members { action_profile: "ecmp_selector" member_id: 1 action: "x" }',
                                "action_profile_members[0].action"),
    "member's param too wide": ("action_profile_members { " + MEMBER.replace('value: "1"', 'value: "512"') + " }",
                                "action_profile_members[0].params[1].value"),
    "member's param missing": ('action_profile_members { action_profile: "ecmp_selector" member_id: 1 '
                               'action: "set_next_hop" params { name: "port" value: "1" } }',
                               "action_profile_members[0].params"),
    "member's param twice": (f"action_profile_members {{ {MEMBER} params {{ name: \"port\" value: \"2\" }} }}",
                             "action_profile_members[0].params[2].name"),
    # groups
    "group without an id": ('action_profile_groups { action_profile: "ecmp_selector" members { member_id: 1 } }',
                            "action_profile_groups[0].group_id"),
    "group of an unknown profile": ('action_profile_groups { action_profile: "ecmp" group_id: 1 }',
                                    "action_profile_groups[0].action_profile"),
    "group member without an id": ('action_profile_groups { action_profile: "ecmp_selector" group_id: 1 '
                                   'members { member_id: 1 } members { weight: 2 } }',
                                   "action_profile_groups[0].members[1].member_id"),
    "group member twice": ('action_profile_groups { action_profile: "ecmp_selector" group_id: 1 '
                           'members { member_id: 1 } members { member_id: 1 } }',
                           "action_profile_groups[0].members[1].member_id"),
    "group member negative weight": ('action_profile_groups { action_profile: "ecmp_selector" group_id: 1 '
                                     'members { member_id: 1 weight: -1 } }',
                                     "action_profile_groups[0].members[0].weight"),
    "group over its max_size": ('action_profile_groups { action_profile: "ecmp_selector" group_id: 1 max_size: 2 '
                                'members { member_id: 1 } members { member_id: 2 weight: 2 } }',
                                "action_profile_groups[0].members"),
    "group negative max_size": ('action_profile_groups { action_profile: "ecmp_selector" group_id: 1 max_size: -1 }',
                                "action_profile_groups[0].max_size"),
    # table entries of a selector table
    "selector table with a direct action": (f'table_entries {{ {ROUTE_MATCH} action: "drop" }}',
                                            "table_entries[0].action"),
    "selector table with no action": (f"table_entries {{ {ROUTE_MATCH} }}", "table_entries[0].action"),
    "selector table with member and group": (f"table_entries {{ {ROUTE_MATCH} member_id: 1 group_id: 2 }}",
                                             "table_entries[0].group_id"),
    "selector table with params": (f'table_entries {{ {ROUTE_MATCH} member_id: 1 params {{ name: "port" value: "1" }} }}',
                                   "table_entries[0].params"),
    "one-shot action not of the table": (f'table_entries {{ {ROUTE_MATCH} action_set {{ action: "flood" }} }}',
                                         "table_entries[0].action_set[0].action"),
    "one-shot param too wide": (f'table_entries {{ {ROUTE_MATCH} action_set {{ action: "set_next_hop" params {{ '
                                'name: "next_hop_mac" value: "1" } params { name: "port" value: "1000" } } }',
                                "table_entries[0].action_set[0].params[1].value"),
    "one-shot negative weight": (f'table_entries {{ {ROUTE_MATCH} action_set {{ action: "drop" weight: -2 }} }}',
                                 "table_entries[0].action_set[0].weight"),
    # direct tables
    "direct table with a member": ('table_entries { table: "l2_flood" match { field: "hdr.ethernet.dst" '
                                   'exact { value: "00:00:00:00:00:01" } } member_id: 1 }', "table_entries[0].member_id"),
    "direct table with a group": ('table_entries { table: "l2_flood" is_default_action: true group_id: 1 }',
                                  "table_entries[0].group_id"),
    "direct table with a one-shot set": ('table_entries { table: "l2_flood" is_default_action: true '
                                         'action_set { action: "drop" } }', "table_entries[0].action_set"),
    "meter config on a table without a direct meter": (
        'table_entries { table: "l2_flood" is_default_action: true action: "drop" meter_config { cir: 1 pir: 1 } }',
        "table_entries[0].meter_config"),
    "counter data on a table without a direct counter": (
        f'table_entries {{ {ROUTE_MATCH} member_id: 1 counter_data {{ packet_count: 1 }} }}',
        "table_entries[0].counter_data"),
    "direct meter cir above pir": (f"table_entries {{ {ACL_ENTRY} meter_config {{ cir: 3 pir: 2 }} }}",
                                   "table_entries[1].meter_config.cir"),
    "direct meter negative burst": (f"table_entries {{ {ACL_ENTRY} meter_config {{ cburst: -1 }} }}",
                                    "table_entries[1].meter_config.cburst"),
    "direct counter negative": (f"table_entries {{ {ACL_ENTRY} counter_data {{ byte_count: -1 }} }}",
                                "table_entries[1].counter_data.byte_count"),
    "default entry with a match": ('table_entries { table: "l2_flood" is_default_action: true action: "drop" '
                                   'match { field: "hdr.ethernet.dst" exact { value: "1" } } }', "table_entries[0].match"),
    # packet replication engine
    "multicast group 0": ("multicast_groups { replicas { egress_port: 1 } }", "multicast_groups[0].group_id"),
    "multicast group beyond v1model's 16 bits": ("multicast_groups { group_id: 65536 }", "multicast_groups[0].group_id"),
    "multicast port beyond 9 bits": ("multicast_groups { group_id: 1 replicas { egress_port: 1 } "
                                     "replicas { egress_port: 512 } }", "multicast_groups[0].replicas[1].egress_port"),
    "multicast replica twice": ("multicast_groups { group_id: 1 replicas { egress_port: 1 instance: 2 } "
                                "replicas { egress_port: 1 instance: 2 } }", "multicast_groups[0].replicas[1]"),
    "replica instance beyond v1model's 16 bits": ("multicast_groups { group_id: 1 replicas { egress_port: 1 "
                                                  "instance: 65536 } }", "multicast_groups[0].replicas[0].instance"),
    "clone session 0": ("clone_sessions { replicas { egress_port: 1 } }", "clone_sessions[0].session_id"),
    "clone port beyond 9 bits": ("clone_sessions { session_id: 1 replicas { egress_port: 4096 } }",
                                 "clone_sessions[0].replicas[0].egress_port"),
    "clone replica twice": ("clone_sessions { session_id: 1 replicas { egress_port: 3 } replicas { egress_port: 3 } }",
                            "clone_sessions[0].replicas[1]"),
    "clone negative length": ("clone_sessions { session_id: 1 packet_length_bytes: -1 }",
                              "clone_sessions[0].packet_length_bytes"),
    # meters
    "unknown meter": ('meter_entries { meter: "nope" index: 1 }', "meter_entries[0].meter"),
    "direct meter by index": ('meter_entries { meter: "acl_meter" index: 1 }', "meter_entries[0].meter"),
    "meter index beyond size": ('meter_entries { meter: "port_policer" index: 512 }', "meter_entries[0].index"),
    "meter index negative": ('meter_entries { meter: "port_policer" index: -1 }', "meter_entries[0].index"),
    "meter cir above pir": ('meter_entries { meter: "port_policer" index: 1 config { cir: 5 pir: 4 } }',
                            "meter_entries[0].config.cir"),
    "meter negative pburst": ('meter_entries { meter: "port_policer" index: 1 config { pburst: -4 } }',
                              "meter_entries[0].config.pburst"),
    # counters
    "unknown counter": ('counter_entries { counter: "nope" }', "counter_entries[0].counter"),
    "direct counter by index": ('counter_entries { counter: "acl_counter" }', "counter_entries[0].counter"),
    "counter index beyond size": ('counter_entries { counter: "port_rx" index: 512 }', "counter_entries[0].index"),
    "bytes for a packet counter": ('counter_entries { counter: "port_rx" index: 1 data { byte_count: 64 } }',
                                   "counter_entries[0].data.byte_count"),
    "negative packets": ('counter_entries { counter: "port_rx" index: 1 data { packet_count: -1 } }',
                         "counter_entries[0].data.packet_count"),
    # registers
    "unknown register": ('register_entries { register: "nope" value: "1" }', "register_entries[0].register"),
    "register index beyond size": ('register_entries { register: "last_seen_src" index: 512 value: "1" }',
                                   "register_entries[0].index"),
    "register value too wide": ('register_entries { register: "last_seen_src" value: "0x100000000" }',
                                "register_entries[0].value"),
    "register value does not parse": ('register_entries { register: "last_seen_src" value: "many" }',
                                      "register_entries[0].value"),
    "register value missing": ('register_entries { register: "last_seen_src" index: 1 }',
                               "register_entries[0].value"),
    # value sets
    "unknown value set": ('value_set_entries { value_set: "nope" }', "value_set_entries[0].value_set"),
    "value set over its size": ('value_set_entries { value_set: "ethertypes" '
                                + 'members { match { field: "type" exact { value: "1" } } } ' * 3 + "}",
                                "value_set_entries[0].members"),
    "value set member too wide": ('value_set_entries { value_set: "ethertypes" members { match { field: "type" '
                                  'exact { value: "65536" } } } }', "value_set_entries[0].members[0].match[0].exact"),
    "value set unknown field": ('value_set_entries { value_set: "ethertypes" members { match { field: "proto" '
                                'exact { value: "1" } } } }', "value_set_entries[0].members[0].match[0].field"),
    "value set member without its field": ('value_set_entries { value_set: "ethertypes" members { } }',
                                           "value_set_entries[0].members[0].match"),
    "value set member twice": ('value_set_entries { value_set: "ethertypes" members { match { field: "type" '
                               'exact { value: "1" } } } members { match { field: "type" exact { value: "0x1" } } } }',
                               "value_set_entries[0].members[1]"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_form_raises_with_its_path_in_the_spec(case):
    text, path = INVALID[case]
    if text.startswith("table_entries") and path.startswith("table_entries[1]"):
        text = f"table_entries {{ {ROUTE_MATCH} member_id: 1 }} " + text  # the bad one second
    with pytest.raises(EntryError) as exc:
        to_p4_entities(_spec(text), INDEX)
    assert exc.value.field == path, exc.value
    assert exc.value.description


def _index(mutate) -> P4InfoIndex:
    return P4InfoIndex(_p4info(mutate))


def _profile(**kw):
    def mutate(info):
        for k, v in kw.items():
            setattr(info.action_profiles[0], k, v)
    return mutate


def test_a_profile_without_selector_takes_members_not_groups_nor_sets():
    index = _index(_profile(with_selector=False))
    to_p4_entities(_spec(f"action_profile_members {{ {MEMBER} }} table_entries {{ {ROUTE_MATCH} member_id: 1 }}"),
                   index)
    for text, path in [("action_profile_groups { action_profile: 'ecmp_selector' group_id: 1 }",
                        "action_profile_groups[0].action_profile"),
                       (f"table_entries {{ {ROUTE_MATCH} group_id: 1 }}", "table_entries[0].group_id"),
                       (f"table_entries {{ {ROUTE_MATCH} action_set {{ action: 'drop' }} }}",
                        "table_entries[0].action_set")]:
        with pytest.raises(EntryError) as exc:
            to_p4_entities(_spec(text), index)
        assert exc.value.field == path


def test_max_group_size_bounds_groups_and_one_shot_sets():
    index = _index(_profile(max_group_size=2))
    ok = "action_profile_groups { action_profile: 'ecmp_selector' group_id: 1 members { member_id: 1 weight: 2 } }"
    to_p4_entities(_spec(ok), index)
    for text, path in [
        ("action_profile_groups { action_profile: 'ecmp_selector' group_id: 1 members { member_id: 1 } "
         "members { member_id: 2 } members { member_id: 3 } }", "action_profile_groups[0].members"),
        ("action_profile_groups { action_profile: 'ecmp_selector' group_id: 1 max_size: 3 }",
         "action_profile_groups[0].max_size"),
        (f"table_entries {{ {ROUTE_MATCH} " + "action_set { action: 'drop' } " * 3 + "}", "table_entries[0].action_set"),
    ]:
        with pytest.raises(EntryError) as exc:
            to_p4_entities(_spec(text), index)
        assert exc.value.field == path
    # sum_of_members semantics: weights do not count
    index = _index(lambda i: (_profile(max_group_size=2)(i), i.action_profiles[0].sum_of_members.SetInParent()))
    to_p4_entities(_spec(ok.replace("weight: 2", "weight: 9") + ""), index)


def test_weights_disallowed():
    index = _index(_profile(weights_disallowed=True))
    to_p4_entities(_spec("action_profile_groups { action_profile: 'ecmp_selector' group_id: 1 "
                         "members { member_id: 1 weight: 1 } members { member_id: 2 } }"), index)
    with pytest.raises(EntryError) as exc:
        to_p4_entities(_spec("action_profile_groups { action_profile: 'ecmp_selector' group_id: 1 "
                             "members { member_id: 1 weight: 2 } }"), index)
    assert exc.value.field == "action_profile_groups[0].members[0].weight"


def test_counter_units_both_bytes():
    both = to_p4_entities(_spec(f"table_entries {{ {ACL_ENTRY} counter_data {{ byte_count: 1 packet_count: 2 }} }}"),
                          INDEX)
    assert both[0][1].table_entry.counter_data == p4r.CounterData(byte_count=1, packet_count=2)
    index = _index(lambda i: setattr(i.counters[0].spec, "unit", p4i.CounterSpec.BYTES))
    to_p4_entities(_spec("counter_entries { counter: 'port_rx' data { byte_count: 5 } }"), index)
    with pytest.raises(EntryError) as exc:
        to_p4_entities(_spec("counter_entries { counter: 'port_rx' data { packet_count: 5 } }"), index)
    assert exc.value.field == "counter_entries[0].data.packet_count"


@pytest.mark.parametrize("kind", [p4i.MeterSpec.SINGLE_RATE_TWO_COLOR, p4i.MeterSpec.SINGLE_RATE_THREE_COLOR])
def test_single_rate_meters_take_their_committed_rate_as_peak(kind):
    index = _index(lambda i: setattr(i.meters[0].spec, "type", kind))
    to_p4_entities(_spec("meter_entries { meter: 'port_policer' config { cir: 5 cburst: 2 pir: 5 pburst: 2 } }"),
                   index)
    for config, field in [("cir: 5 cburst: 2 pir: 6 pburst: 2", "pir"), ("cir: 5 cburst: 2 pir: 5", "pburst")]:
        with pytest.raises(EntryError) as exc:
            to_p4_entities(_spec(f"meter_entries {{ meter: 'port_policer' config {{ {config} }} }}"), index)
        assert exc.value.field == f"meter_entries[0].config.{field}"


def test_port_width_from_a_psa_port_type():
    def psa(info):
        info.pkg_info.arch = "psa"
        info.type_info.new_types["PortId_t"].translated_type.sdn_bitwidth = 32
    index = _index(psa)
    [(_, e)] = to_p4_entities(_spec("multicast_groups { group_id: 70000 replicas { egress_port: 4000000000 } }"),
                              index)
    assert e.packet_replication_engine_entry.multicast_group_entry.replicas[0].egress_port == 4000000000


def test_registers_of_other_types_are_refused():
    def struct(info):
        info.registers[0].type_spec.struct.name = "pair"
    with pytest.raises(EntryError) as exc:
        to_p4_entities(_spec("register_entries { register: 'last_seen_src' value: '1' }"), _index(struct))
    assert exc.value.field == "register_entries[0].register"


def test_entities_come_in_install_order_with_their_paths():
    spec = _spec("value_set_entries { value_set: 'ethertypes' } "
                 f"table_entries {{ {ROUTE_MATCH} group_id: 10 }} table_entries {{ {ROUTE_MATCH} member_id: 1 }} "
                 "action_profile_groups { action_profile: 'ecmp_selector' group_id: 10 members { member_id: 1 } } "
                 f"action_profile_members {{ {MEMBER} }} multicast_groups {{ group_id: 1 }} "
                 "clone_sessions { session_id: 1 } meter_entries { meter: 'port_policer' } "
                 "counter_entries { counter: 'port_rx' } register_entries { register: 'last_seen_src' value: '1' }")
    got = to_p4_entities(spec, INDEX)
    assert [p for p, _ in got] == ["multicast_groups[0]", "clone_sessions[0]", "action_profile_members[0]",
                                   "action_profile_groups[0]", "table_entries[0]", "table_entries[1]",
                                   "meter_entries[0]", "counter_entries[0]", "register_entries[0]",
                                   "value_set_entries[0]"]
    assert [kind_of(e) for _, e in got] == [p.split("[")[0] for p, _ in got]
    assert MODIFY_ONLY < set(ENTITY_FIELDS)
    # a PlacementSpec carries the same fields
    placement = kr.PlacementSpec()
    for name in ENTITY_FIELDS:
        getattr(placement, name).extend(getattr(spec, name))
    assert to_p4_entities(placement, INDEX) == got


def test_to_p4_entry_paths_stay_relative_to_the_entry():
    with pytest.raises(EntryError) as exc:
        to_p4_entry(text_format.Parse(f"{ROUTE_MATCH} action_set {{ action: 'flood' }}", kr.TableEntry()), INDEX)
    assert exc.value.field == "action_set[0].action"


@pytest.mark.parametrize("case", sorted(VALID))
def test_what_a_device_reads_back_converts_to_the_same_entity(case):
    """from_p4_entity gives names and text values that convert back to the same bytes."""
    spec_text, _ = VALID[case]
    [(_, entity)] = to_p4_entities(_spec(spec_text), INDEX)
    back = from_p4_entity(entity, INDEX)
    spec = kr.DeploymentSpec()
    getattr(spec, kind_of(entity)).append(back)
    [(_, again)] = to_p4_entities(spec, INDEX)
    assert again == entity


def test_read_back_values_are_names_and_decimal_text():
    [(_, member)] = to_p4_entities(_spec(f"action_profile_members {{ {MEMBER} }}"), INDEX)
    assert from_p4_entity(member, INDEX) == text_format.Parse(
        'action_profile: "MpIngress.ecmp_selector" member_id: 1 action: "MpIngress.set_next_hop" '
        'params { name: "next_hop_mac" value: "257" } params { name: "port" value: "1" }', kr.ProfileMember())
    acl = _entity(f'table_entry {{ table_id: {ACL} match {{ field_id: 2 ternary {{ value: "\\n" mask: "\\377" }} }} '
                  f"priority: 3 action {{ action {{ action_id: {ACL_ALLOW} }} }} }}")
    assert from_p4_entity(acl, INDEX) == text_format.Parse(
        'table: "MpIngress.acl" match { field: "hdr.ipv4.dst" ternary { value: "10" mask: "0xff" } } priority: 3 '
        'action: "MpIngress.acl_allow"', kr.TableEntry())


def test_direct_counter_and_meter_reads_are_their_table_entries():
    entry = f"table_id: {ACL} priority: 3 action {{ action {{ action_id: {ACL_ALLOW} }} }}"
    counter = _entity(f"direct_counter_entry {{ table_entry {{ {entry} }} data {{ byte_count: 640 packet_count: 10 }} }}")
    meter = _entity(f"direct_meter_entry {{ table_entry {{ {entry} }} config {{ cir: 1 pir: 2 }} }}")
    want = 'table: "MpIngress.acl" priority: 3 action: "MpIngress.acl_allow" '
    assert from_p4_entity(counter, INDEX) == text_format.Parse(
        want + "counter_data { byte_count: 640 packet_count: 10 }", kr.TableEntry())
    assert from_p4_entity(meter, INDEX) == text_format.Parse(want + "meter_config { cir: 1 pir: 2 }", kr.TableEntry())
    assert kind_of(counter) == kind_of(meter) == "table_entries"


def test_read_back_replicas_and_unknown_ids():
    pre = _entity("packet_replication_engine_entry { clone_session_entry { session_id: 9 replicas { port: '\\001\\000' "
                  "instance: 1 } } }")
    assert from_p4_entity(pre, INDEX) == kr.CloneSession(session_id=9, replicas=[kr.PacketReplica(egress_port=256,
                                                                                                  instance=1)])
    unknown = _entity("counter_entry { counter_id: 1234 index { index: 2 } data { packet_count: 1 } }")
    assert from_p4_entity(unknown, INDEX) == kr.CounterEntry(counter="1234", index=2,
                                                             data=kr.CounterData(packet_count=1))
    with pytest.raises(EntryError):
        from_p4_entity(_entity("digest_entry { digest_id: 1 }"), INDEX)


def test_action_scopes():
    """@defaultonly actions are for default entries only, @tableonly ones never the default."""
    for text, path in [
        ("action_profile_members { action_profile: 'ecmp_selector' member_id: 1 action: 'NoAction' }",
         "action_profile_members[0].action"),
        (f"table_entries {{ {ROUTE_MATCH} action_set {{ action: 'NoAction' }} }}", "table_entries[0].action_set[0].action"),
        ("table_entries { table: 'ipv4_route' is_default_action: true group_id: 1 }", "table_entries[0].group_id"),
    ]:
        with pytest.raises(EntryError) as exc:
            to_p4_entities(_spec(text), INDEX)
        assert exc.value.field == path
    # a selector table's default entry takes a direct action (its P4Info default is NoAction)
    [(_, e)] = to_p4_entities(_spec("table_entries { table: 'ipv4_route' is_default_action: true "
                                    "action: 'NoAction' }"), INDEX)
    assert e.table_entry == text_format.Parse(f"table_id: {ROUTE} is_default_action: true action {{ action {{ "
                                              f"action_id: {NO_ACTION} }} }}", p4r.TableEntry())

    def scoped(scope):
        def mutate(info):
            [ref] = [r for r in info.tables[1].action_refs if r.id == DROP]
            ref.scope = scope
        return _index(mutate)
    entry = ("table_entries { table: 'l2_flood' match { field: 'hdr.ethernet.dst' exact { value: '1' } } "
             "action: 'drop' }")
    default = "table_entries { table: 'l2_flood' is_default_action: true action: 'drop' }"
    table_only, default_only = scoped(p4i.ActionRef.TABLE_ONLY), scoped(p4i.ActionRef.DEFAULT_ONLY)
    to_p4_entities(_spec(entry), table_only)
    to_p4_entities(_spec(default), default_only)
    for text, index in [(default, table_only), (entry, default_only)]:
        with pytest.raises(EntryError) as exc:
            to_p4_entities(_spec(text), index)
        assert exc.value.field == "table_entries[0].action"


def test_a_group_without_max_size_gets_the_profiles_bound_and_weights_their_bound():
    def bounded(info):
        info.action_profiles[0].max_group_size = 4
        info.action_profiles[0].sum_of_members.max_member_weight = 2
    index = _index(bounded)
    [(_, e)] = to_p4_entities(_spec("action_profile_groups { action_profile: 'ecmp_selector' group_id: 1 "
                                    "members { member_id: 1 weight: 2 } }"), index)
    assert e.action_profile_group.max_size == 4
    with pytest.raises(EntryError) as exc:
        to_p4_entities(_spec("action_profile_groups { action_profile: 'ecmp_selector' group_id: 1 "
                             "members { member_id: 1 weight: 3 } }"), index)
    assert exc.value.field == "action_profile_groups[0].members[0].weight"
