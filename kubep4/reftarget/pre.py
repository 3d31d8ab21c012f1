"""The packet replication engine of the reference target (spec §9.5 PacketReplicationEngineEntry):
multicast groups (§9.5.1) and clone sessions (§9.5.2).

Both are INSERT / MODIFY / DELETE by id: id 0 is INVALID_ARGUMENT in a Write (it is the wildcard of
reads, §9.5.1.1, §9.5.2.1), INSERT of an id in use ALREADY_EXISTS, MODIFY / DELETE of an unknown
id NOT_FOUND.  A replica names its port either by ``egress_port`` (the deprecated ``uint32``) or by
``port`` (an SDN port bytestring, canonical, at most 32 bits); both forms are the same port, and a
replica with neither is port 0, as the proto3 default of ``egress_port`` reads.  Two replicas of an
entry with the same (port, instance), backup replicas included, are INVALID_ARGUMENT, as is a backup
replica on its own replica's port.  ``instance`` is at most 0xFFFF (BMv2's ``egress_rid`` is 16
bits), ``class_of_service`` at most 0xFF (PSA's ``ClassOfService_t``), ``packet_length_bytes`` not
negative: INVALID_ARGUMENT otherwise.  Clone sessions take no backup replicas (INVALID_ARGUMENT).

Entries read back exactly as written.  A read with id 0 returns every entry of its kind; an entity
naming neither kind is INVALID_ARGUMENT.
"""
from __future__ import annotations

from kubep4.p4 import p4r
from kubep4.reftarget.errors import Code, fail
from kubep4.reftarget.values import UpdateType, check_bytes, check_update_type

__all__ = ["PreStore", "MAX_INSTANCE", "MAX_CLASS_OF_SERVICE"]

MAX_INSTANCE = 0xFFFF
MAX_CLASS_OF_SERVICE = 0xFF
_KINDS = {"multicast_group_entry": ("multicast_group_id", "multicast group"),
          "clone_session_entry": ("session_id", "clone session")}


def _port(replica, what: str) -> int:
    """The port of a Replica / BackupReplica as a number, from whichever form it uses."""
    if isinstance(replica, p4r.Replica) and replica.WhichOneof("port_kind") == "egress_port":
        return replica.egress_port
    if replica.port:
        return check_bytes(replica.port, 32, f"{what}.port")
    return 0


class PreStore:
    """Multicast groups and clone sessions of a device, by id, as written."""

    def __init__(self, info=None):
        self.entries: dict[str, dict[int, p4r.PacketReplicationEngineEntry]] = {k: {} for k in _KINDS}

    def copy(self) -> "PreStore":
        out = PreStore()
        out.entries = {k: dict(v) for k, v in self.entries.items()}
        return out

    @staticmethod
    def _kind(entry: p4r.PacketReplicationEngineEntry) -> str:
        kind = entry.WhichOneof("type")
        if kind is None:
            raise fail(Code.INVALID_ARGUMENT, "a packet_replication_engine_entry names neither a multicast "
                                              "group nor a clone session")
        return kind

    def write(self, update: p4r.Update) -> None:
        check_update_type(update)
        entry = update.entity.packet_replication_engine_entry
        kind = self._kind(entry)
        id_field, what = _KINDS[kind]
        msg = getattr(entry, kind)
        obj_id = getattr(msg, id_field)
        if obj_id == 0:
            raise fail(Code.INVALID_ARGUMENT, f"{id_field} 0 is not a {what} (0 is the wildcard of reads)")
        store = self.entries[kind]
        if update.type == UpdateType.DELETE:
            if obj_id not in store:
                raise fail(Code.NOT_FOUND, f"no {what} {obj_id}")
            del store[obj_id]
            return
        if update.type == UpdateType.INSERT and obj_id in store:
            raise fail(Code.ALREADY_EXISTS, f"{what} {obj_id} already exists")
        if update.type == UpdateType.MODIFY and obj_id not in store:
            raise fail(Code.NOT_FOUND, f"no {what} {obj_id}")
        self._check_replicas(msg.replicas, clone=kind == "clone_session_entry")
        if kind == "clone_session_entry":
            if msg.class_of_service > MAX_CLASS_OF_SERVICE:
                raise fail(Code.INVALID_ARGUMENT, f"class_of_service {msg.class_of_service} exceeds "
                                                  f"{MAX_CLASS_OF_SERVICE}")
            if msg.packet_length_bytes < 0:
                raise fail(Code.INVALID_ARGUMENT, f"packet_length_bytes {msg.packet_length_bytes} is negative")
        out = p4r.PacketReplicationEngineEntry()
        out.CopyFrom(entry)
        store[obj_id] = out

    @staticmethod
    def _check_replicas(replicas, clone: bool) -> None:
        seen: set[tuple[int, int]] = set()
        for i, r in enumerate(replicas):
            what = f"replicas[{i}]"
            port = _port(r, what)
            pairs = [(port, r.instance, what)]
            if clone and len(r.backup_replicas):
                raise fail(Code.INVALID_ARGUMENT, f"{what}: clone session replicas take no backup replicas")
            for j, b in enumerate(r.backup_replicas):
                bwhat = f"{what}.backup_replicas[{j}]"
                bport = _port(b, bwhat)
                if bport == port:
                    raise fail(Code.INVALID_ARGUMENT, f"{bwhat}: a backup replica cannot use its replica's "
                                                      f"port {port}")
                pairs.append((bport, b.instance, bwhat))
            for p, inst, w in pairs:
                if inst > MAX_INSTANCE:
                    raise fail(Code.INVALID_ARGUMENT, f"{w}.instance {inst} exceeds {MAX_INSTANCE}")
                if (p, inst) in seen:
                    raise fail(Code.INVALID_ARGUMENT, f"{w}: (port {p}, instance {inst}) is given twice")
                seen.add((p, inst))

    def read(self, entity: p4r.Entity) -> list[p4r.Entity]:
        entry = entity.packet_replication_engine_entry
        kind = self._kind(entry)
        id_field, _ = _KINDS[kind]
        obj_id = getattr(getattr(entry, kind), id_field)
        store = self.entries[kind]
        if obj_id == 0:
            chosen = [store[k] for k in sorted(store)]
        else:
            chosen = [store[obj_id]] if obj_id in store else []
        return [p4r.Entity(packet_replication_engine_entry=e) for e in chosen]

    def reconcile(self, info) -> tuple["PreStore", list[str]]:
        """The PRE depends on no P4Info object: RECONCILE_AND_COMMIT keeps it whole."""
        return self.copy(), []
