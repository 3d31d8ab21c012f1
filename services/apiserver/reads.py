"""ReadDeployment: a deployment's live values, read from its devices now and never stored.

The apiserver does not read devices itself: as KubeVirt's virt-api forwards a VMI subresource to
the virt-handler of the VMI's node, it finds each replica's node and device from the deployment's
status and placement, and asks that node's agent (NodeReads at Node.spec.read_address), every
replica at once under one deadline. Each replica answers for itself: a node or device that does
not answer gives that replica an error and a reason, never the others. Nothing is written to etcd.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import grpc

from kubep4 import store as st
from kubep4.errors import MESSAGE_CHARS, Violation, quoted, truncate
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import node_pb2 as node_api
from kubep4.gen.kubep4.v1 import node_pb2_grpc as node_grpc
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.serving import open_channel
from kubep4.telemetry import tracer
from kubep4.tls import TLSFileError

log = logging.getLogger(__name__)
_tracer = tracer("kubep4.apiserver")
KINDS = ("counter", "meter", "register", "table", "action_profile", "multicast", "clone_session")
READ_DEADLINE = 10.0  # seconds every replica has to answer (less when the caller's deadline is nearer)
DEADLINE_MARGIN = 0.5  # kept from the caller's deadline to answer with what came back in time
MAX_CHANNELS = 256    # to node agents, kept open; the least recently used is closed past this
REASON_KEY = "kubep4-reason"  # the agent's reason for a refused read (services/node_agent/reads.py)
MAX_OBJECT_NAME = 1024


def request_problems(request: api.ReadDeploymentRequest) -> list[Violation]:
    """What is wrong with a request's kind and object name (namespace and name: the server's checks)."""
    out = []
    if request.kind not in KINDS:
        out.append(Violation("kind", f"{quoted(request.kind)} is not one of {', '.join(KINDS)}" if request.kind
                             else f"required: one of {', '.join(KINDS)}"))
    if len(request.object_name) > MAX_OBJECT_NAME:
        out.append(Violation("object_name", f"longer than {MAX_OBJECT_NAME} characters"))
    return out


def placement_name(deployment: str, replica: int) -> str:
    """The controller's name for a replica's placement (services/controller/deployments.py)."""
    return f"{deployment}-{replica}"


class _Failed(Exception):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


class DeploymentReads:
    def __init__(self, store: st.Store, interceptors: list | None = None, deadline: float = READ_DEADLINE,
                 tls=None):
        self.store, self.deadline = store, deadline
        self.tls = tls  # a kubep4.tls.ClientTLS: the agents' read services serve mTLS
        self._interceptors = list(interceptors or [])
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()  # read address -> channel

    def _stub(self, address: str) -> node_grpc.NodeReadsStub:
        channel = self._channels.get(address)
        if channel is None:
            try:
                channel = open_channel(address, self.tls, self._interceptors)
            except TLSFileError as e:  # the apiserver's certificate files, caught mid-renewal
                raise _Failed("NodeUnreachable", f"no channel to {address}: {e}") from None
            self._channels[address] = channel
            while len(self._channels) > MAX_CHANNELS:
                _, old = self._channels.popitem(last=False)
                asyncio.ensure_future(old.close())
        self._channels.move_to_end(address)
        return node_grpc.NodeReadsStub(channel)

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), OrderedDict()
        await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)

    async def read(self, request: api.ReadDeploymentRequest, time_remaining: float | None = None
                   ) -> api.ReadDeploymentResponse:
        """Every replica's values (or its error). Raises st.NotFound for a deployment that is not there."""
        ns = request.namespace or "default"
        deadline = self.deadline
        if time_remaining is not None:
            deadline = max(0.1, min(deadline, time_remaining - DEADLINE_MARGIN))
        with _tracer.start_as_current_span("apiserver read deployment", attributes={
                "kubep4.namespace": ns, "kubep4.deployment": request.name, "kubep4.read.kind": request.kind,
                "kubep4.read.name": request.object_name}) as span:
            d = await self.store.get(st.DEPLOYMENTS, ns, request.name)
            replicas = sorted(d.status.replicas, key=lambda r: r.replica)
            nodes: dict[str, asyncio.Future] = {}  # one Node read per node, shared by its replicas
            answers = await asyncio.gather(*(self._replica(ns, request, r, nodes, deadline) for r in replicas))
            span.set_attribute("kubep4.read.replicas", len(answers))
            span.set_attribute("kubep4.read.failed", sum(bool(a.error) for a in answers))
            return api.ReadDeploymentResponse(replicas=answers)

    async def _node(self, name: str, nodes: dict[str, asyncio.Future]) -> kr.Node:
        if name not in nodes:
            nodes[name] = asyncio.ensure_future(self.store.get(st.NODES, "", name))
            # its error is every waiter's; retrieved here too when they were all cancelled (the deadline)
            nodes[name].add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(nodes[name])

    async def _replica(self, ns: str, request: api.ReadDeploymentRequest, r: kr.ReplicaStatus,
                       nodes: dict[str, asyncio.Future], deadline: float) -> api.ReplicaValues:
        out = api.ReplicaValues(replica=r.replica, node=r.node, device=r.device)
        with _tracer.start_as_current_span("read replica", attributes={
                "kubep4.replica": r.replica, "kubep4.node": r.node}) as span:
            try:
                out.values.CopyFrom(await asyncio.wait_for(self._read_replica(ns, request, out, nodes, deadline),
                                                           deadline))
            except _Failed as e:
                out.reason, out.error = e.reason, truncate(e.message, MESSAGE_CHARS)
            except asyncio.TimeoutError:
                out.reason = "NodeUnreachable"
                out.error = f"node {quoted(out.node)} did not answer within {deadline:.1f}s"
            except st.Unavailable:
                out.reason, out.error = "StorageUnavailable", "storage is unavailable; retry later"
            if out.error:
                span.set_attribute("kubep4.read.error", out.reason)
        return out

    async def _read_replica(self, ns: str, request: api.ReadDeploymentRequest, out: api.ReplicaValues,
                            nodes: dict[str, asyncio.Future], deadline: float) -> api.DeviceValues:
        if not out.node or not out.device:
            raise _Failed("NotPlaced", f"replica {out.replica} is not placed on a device")
        try:  # the placement says where the replica is now (the status may lag a move)
            p = await self.store.get(st.PLACEMENTS, ns, placement_name(request.name, out.replica), shard=out.node)
        except st.NotFound:
            raise _Failed("NotPlaced", f"replica {out.replica} is moving (no placement on node "
                                       f"{quoted(out.node)}); retry") from None
        out.device = p.spec.device
        try:
            node = await self._node(out.node, nodes)
        except st.NotFound:
            raise _Failed("NodeNotFound", f"node {quoted(out.node)} is not registered") from None
        if not node.spec.read_address:
            raise _Failed("NoReadService", f"node {quoted(out.node)} serves no reads (its agent runs without "
                                           "--read-listen)")
        try:
            resp = await self._stub(node.spec.read_address).ReadDevice(node_api.ReadDeviceRequest(
                device=out.device, kind=request.kind, object_name=request.object_name), timeout=deadline)
        except grpc.aio.AioRpcError as e:
            reason = dict(e.trailing_metadata() or ()).get(REASON_KEY)
            if reason:  # the agent answered: its words, about its device
                raise _Failed(reason, e.details() or e.code().name) from None
            log.warning("read of node %s at %s failed: %s %s", out.node, node.spec.read_address,
                        e.code().name, e.details())
            raise _Failed("NodeUnreachable", f"the agent of node {quoted(out.node)} does not answer "
                                             f"({e.code().name})") from None
        return resp.values
