"""The synchronous SDK's edit: its change function may call the same client (it runs off the
client's event loop), against a real apiserver process."""
from __future__ import annotations

from kubep4.client import Client
from kubep4.localstack import LocalStack

from .conftest import example_objects


def test_a_sync_edit_whose_change_calls_the_client(tmp_path):
    with LocalStack(nodes=0, data_dir=str(tmp_path)) as s, Client(s.api, **s.client_args()) as c:
        p, d = example_objects()
        c.apply(p)
        c.create(d)

        def pin_to_pipeline(dep) -> None:  # reads through the same client meanwhile
            dep.metadata.annotations["pipeline-digest"] = c.get("pipeline", dep.spec.pipeline).status.digest
        edited = c.edit(d.metadata.name, pin_to_pipeline)
        assert edited.metadata.annotations["pipeline-digest"] == c.get("pipeline", p.metadata.name).status.digest

        async def scale(dep) -> None:  # a coroutine function is awaited, as by AsyncClient.edit
            dep.spec.replicas = 3
        assert c.edit(d.metadata.name, scale).spec.replicas == 3
