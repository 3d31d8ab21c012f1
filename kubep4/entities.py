"""The P4Runtime entities a Deployment carries, named once.

A Deployment's spec and each of its Placements' specs hold the same entity lists under the same
field names (``ENTITY_FIELDS``); the controller copies them into every placement, so a replica is
always installed with the entities of the generation it belongs to.
"""
from __future__ import annotations

from kubep4.gen.kubep4.v1 import resources_pb2 as kr

__all__ = ["ENTITY_FIELDS", "copy_entities", "entity_count"]

# In the order the node agent installs them: what a later kind refers to comes first
# (members before groups before the table entries that use them). Deletes run in reverse.
ENTITY_FIELDS = ("multicast_groups", "clone_sessions", "action_profile_members",
                 "action_profile_groups", "table_entries", "meter_entries", "counter_entries",
                 "register_entries", "value_set_entries")


def copy_entities(src: kr.DeploymentSpec | kr.PlacementSpec,
                  dst: kr.DeploymentSpec | kr.PlacementSpec) -> None:
    """Replace ``dst``'s entities with ``src``'s."""
    for name in ENTITY_FIELDS:
        target = getattr(dst, name)
        del target[:]
        target.extend(getattr(src, name))


def entity_count(spec: kr.DeploymentSpec | kr.PlacementSpec) -> int:
    return sum(len(getattr(spec, name)) for name in ENTITY_FIELDS)
