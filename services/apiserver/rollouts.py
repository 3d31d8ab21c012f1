"""Revisions and `kubep4 rollout` (docs/rollouts.md): GetRevision, ListRevisions, RolloutUndo,
RolloutPause, RolloutResume, RolloutPromote, mixed into the KubeP4 servicer (server.py).

Revisions are the controller's: the apiserver only reads them. Undo is an UpdateDeployment of the
deployment with a revision's pipeline and entities (admitted like any update, a new generation,
hence a new revision), as `kubectl rollout undo` writes the old template back. Pause, resume and
promote set annotations the controller acts on (no new generation): ``kubep4.io/paused`` and
``kubep4.io/promote`` (``<target revision>/<step>``).
"""
from __future__ import annotations

import grpc

from kubep4 import store as st
from kubep4.entities import ENTITY_FIELDS, copy_entities
from kubep4.gen.kubep4.v1 import api_pb2 as api
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.apiserver import server as srv  # its _guard, _check_key...: used at call time only

PAUSED = "kubep4.io/paused"
PROMOTE = "kubep4.io/promote"
DEPLOYMENT_LABEL = "kubep4.io/deployment"


def _guard(fn):
    async def wrapper(self, request, context):
        return await srv._guard(fn)(self, request, context)
    wrapper.__name__ = fn.__name__
    return wrapper


def _refuse(code: grpc.StatusCode, message: str) -> Exception:
    return srv._Rejected(code, message)


def _same_content(d: kr.Deployment, r: kr.Revision) -> bool:
    return (d.spec.pipeline == r.spec.pipeline and d.status.pipeline_digest == r.spec.pipeline_digest
            and all(list(getattr(d.spec, f)) == list(getattr(r.spec, f)) for f in ENTITY_FIELDS))


class RolloutsMixin:
    store: st.Store

    async def _revisions(self, ns: str, name: str) -> list[kr.Revision]:
        items, _ = await self.store.list(st.REVISIONS, ns)
        return sorted((r for r in items if r.spec.deployment == name), key=lambda r: r.spec.revision)

    async def _deployment(self, request) -> kr.Deployment:
        srv._check_key(request.namespace, request.name)
        d = await self.store.get(st.DEPLOYMENTS, request.namespace or "default", request.name)
        if d.metadata.HasField("deletion_timestamp"):
            raise _refuse(grpc.StatusCode.FAILED_PRECONDITION, "deployment is being deleted")
        return d

    @_guard
    async def GetRevision(self, request, context):
        srv._check_key(request.namespace, request.name)
        return await self.store.get(st.REVISIONS, request.namespace or "default", request.name)

    @_guard
    async def ListRevisions(self, request, context):
        items, rev, token = await self._list(st.REVISIONS, request, request.namespace or None)
        return api.RevisionList(items=items, resource_version=rev, continue_token=token)

    @_guard
    async def RolloutUndo(self, request, context):
        srv._check_version(request.to_revision, "to_revision")
        d = await self._deployment(request)
        ns, name = d.metadata.namespace, d.metadata.name
        revs = await self._revisions(ns, name)
        target = next((r for r in revs if r.metadata.name == d.status.target_revision), None)
        if request.to_revision:
            rev = next((r for r in revs if r.spec.revision == request.to_revision), None)
            if rev is None:
                kept = ", ".join(str(r.spec.revision) for r in revs) or "none"
                raise st.NotFound(f"revision {request.to_revision} of deployment {ns}/{name} not found "
                                  f"(revisions kept: {kept})")
        else:  # the newest revision before the target with other content
            newest = target.spec.revision if target is not None else (revs[-1].spec.revision + 1 if revs else 0)
            older = [r for r in revs if r.spec.revision < newest and (target is None or r.spec.hash != target.spec.hash)]
            if not older:
                raise _refuse(grpc.StatusCode.FAILED_PRECONDITION,
                              f"deployment {ns}/{name} has no previous revision to go back to")
            rev = older[-1]
        if _same_content(d, rev):
            return d  # kubectl: "skipped rollback (current template already matches revision N)"
        try:
            pipeline = await self.store.get(st.PIPELINES, ns, rev.spec.pipeline)
        except st.NotFound:
            raise _refuse(grpc.StatusCode.FAILED_PRECONDITION,
                          f"revision {rev.metadata.name} runs pipeline {rev.spec.pipeline}, which no longer "
                          "exists") from None
        if pipeline.status.digest != rev.spec.pipeline_digest:
            raise _refuse(grpc.StatusCode.FAILED_PRECONDITION,
                          f"revision {rev.metadata.name} ran pipeline {rev.spec.pipeline} with digest "
                          f"{rev.spec.pipeline_digest[:19]}; that pipeline now has {pipeline.status.digest[:19]}")
        want = kr.Deployment()
        want.CopyFrom(d)
        want.spec.pipeline = rev.spec.pipeline
        copy_entities(rev.spec, want.spec)
        return await self.UpdateDeployment(api.UpdateDeploymentRequest(deployment=want), context)

    async def _annotate(self, request, change) -> kr.Deployment:
        d = await self._deployment(request)

        def fn(cur: kr.Deployment) -> kr.Deployment | None:
            if cur.metadata.HasField("deletion_timestamp"):
                return None
            change(cur)
            return cur
        out = await self.store.mutate(st.DEPLOYMENTS, d.metadata.namespace, d.metadata.name, fn, current=d)
        if out is None:
            raise st.NotFound(f"deployment {d.metadata.namespace}/{d.metadata.name} not found")
        return out

    @_guard
    async def RolloutPause(self, request, context):
        return await self._annotate(request, lambda d: d.metadata.annotations.__setitem__(PAUSED, "true"))

    @_guard
    async def RolloutResume(self, request, context):
        return await self._annotate(request, lambda d: d.metadata.annotations.pop(PAUSED, None))

    @_guard
    async def RolloutPromote(self, request, context):
        d = await self._deployment(request)
        name = f"{d.metadata.namespace}/{d.metadata.name}"
        if d.spec.strategy.type != "Canary":
            raise _refuse(grpc.StatusCode.FAILED_PRECONDITION,
                          f"deployment {name} is not a canary (strategy {d.spec.strategy.type}): nothing to promote")
        s = d.status
        if not s.target_revision or s.current_revision == s.target_revision:
            raise _refuse(grpc.StatusCode.FAILED_PRECONDITION, f"deployment {name} has no rollout under way")

        def promote(cur: kr.Deployment) -> None:
            cur.metadata.annotations[PROMOTE] = f"{cur.status.target_revision}/{cur.status.canary_step}"
        return await self._annotate(request, promote)
