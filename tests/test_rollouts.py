"""Revisions and rollouts across replicas, end to end: etcd and every service as processes (the
local stack), two reference devices, and an independent P4Runtime reader of what they hold.

A canary on a revision the device refuses stops at its first step and rolls back by itself;
`rollout undo` returns the devices to the previous revision's cookie and entries; a canary step
with a pause waits for promote; the history keeps at most its limit.
"""
from __future__ import annotations

import asyncio
import pathlib
import time

import pytest
import pytest_asyncio
from google.protobuf import text_format

from kubep4 import conditions as cond
from kubep4 import errors
from kubep4 import store as st
from kubep4.bench.p4read import stack_readers
from kubep4.client import AsyncClient
from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from kubep4.localstack import LocalStack
from kubep4.p4 import cookie_for_digest, p4i
from kubep4.p4runtime_client import DeviceConnection

from .conftest import eventually, example_objects

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

V2 = pathlib.Path(__file__).resolve().parents[1] / "examples" / "basic-v2"
HOST_ROUTE = "10.0.3.3"  # v2's ipv4_host entry


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = LocalStack(nodes=2, devices_per_node=1, data_dir=str(tmp_path_factory.mktemp("rollouts")),
                   resync_seconds=0.5, env={"KUBEP4_LOG_LEVEL": "INFO"})
    s.start()
    yield s
    s.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(stack):
    async with stack.client() as c:
        yield c


def v2_pipeline(name: str = "basic-v2", lpm_size: int = 0) -> kr.Pipeline:
    """examples/basic-v2 (basic's tables plus ipv4_host); ``lpm_size``: ipv4_lpm's size in its P4Info
    (1: the device refuses a second route)."""
    p, _ = example_objects()
    info = text_format.Parse((V2 / "basic.p4info.txtpb").read_text(), p4i.P4Info())
    if lpm_size:
        next(t for t in info.tables if t.preamble.name.endswith("ipv4_lpm")).size = lpm_size
    p.metadata.name = name
    p.spec.artifacts.p4info = info.SerializeToString()
    p.spec.artifacts.device_config = (V2 / "basic.json").read_bytes()
    return p


def host_entry() -> kr.TableEntry:
    e = kr.TableEntry(table="BasicIngress.ipv4_host", action="BasicIngress.forward",
                      params=[kr.ActionParam(name="next_hop_mac", value="00:00:00:00:03:03"),
                              kr.ActionParam(name="port", value="3")])
    e.match.add(field="hdr.ipv4.dst").exact.value = HOST_ROUTE
    return e


async def pipelines(c: AsyncClient) -> dict[str, str]:
    """name -> digest of the three pipelines the tests use."""
    p, _ = example_objects()
    out = {}
    for pl in (p, v2_pipeline(), v2_pipeline("small-v2", lpm_size=1)):
        stored, _ = await c.apply(pl)
        out[stored.metadata.name] = stored.status.digest
    return out


async def deploy(c: AsyncClient, name: str, strategy: kr.UpdateStrategy | None = None, history: int | None = None
                 ) -> kr.Deployment:
    _, d = example_objects()
    d.metadata.name = name
    d.spec.replicas = 2
    if strategy is not None:
        d.spec.strategy.CopyFrom(strategy)
    if history is not None:
        d.spec.revision_history_limit = history
    await c.create(d)
    return await c.wait_rollout(name, timeout=60)


async def change(c: AsyncClient, name: str, fn) -> kr.Deployment:
    for _ in range(10):
        d = await c.get("deployment", name)
        fn(d)
        try:
            return await c.update(d)
        except errors.Conflict:
            continue
    raise AssertionError("the deployment kept changing")


async def device_state(stack: LocalStack) -> dict[tuple[str, str], tuple[int | None, frozenset]]:
    """(node, device) -> (cookie, the set of entries as bytes) read from each device directly."""
    out = {}
    for key, reader in stack_readers(stack.device_ports, tls=stack.device_tls()).items():
        config = await reader.pipeline()
        entries = await reader.entries()
        out[key] = (config.cookie.cookie if config is not None else None,
                    frozenset(e.SerializeToString(deterministic=True) for e in entries))
    return out


async def remove(c: AsyncClient, name: str) -> None:
    await c.delete("deployment", name)

    async def gone():
        return not [d for d in await c.list("deployments") if d.metadata.name == name]
    await eventually(gone, 60, what=f"deployment {name} to be deleted")


async def progressing(c: AsyncClient, name: str, status: str, reason: str, timeout: float = 60) -> kr.Deployment:
    async def check():
        d = await c.get("deployment", name)
        p = cond.get(d.status.conditions, "Progressing")
        ok = p is not None and (p.status, p.reason) == (status, reason) and \
            d.status.observed_generation == d.metadata.generation
        return d if ok else None
    return await eventually(check, timeout, 0.1, f"{name} Progressing={status} {reason}")


async def test_undo_returns_the_devices_to_the_previous_revision(stack, client):
    digests = await pipelines(client)
    v1 = await deploy(client, "undo")
    assert v1.status.target_revision == v1.status.current_revision == "undo-1"
    before = await device_state(stack)
    v1_cookie = cookie_for_digest(digests["basic"])
    assert {cookie for cookie, _ in before.values()} == {v1_cookie}

    def to_v2(d: kr.Deployment) -> None:
        d.spec.pipeline = "basic-v2"
        d.spec.table_entries.append(host_entry())
        d.metadata.annotations["kubep4.io/change-cause"] = "basic-v2 with a host route"
    await change(client, "undo", to_v2)
    v2 = await client.wait_rollout("undo", timeout=60)
    assert v2.status.current_revision == v2.status.target_revision == "undo-2"
    on_v2 = await device_state(stack)
    for cookie, entries in on_v2.values():
        assert cookie == cookie_for_digest(digests["basic-v2"]) and len(entries) == 4

    await client.rollout_undo("undo")
    back = await client.wait_rollout("undo", timeout=60)
    assert back.status.target_revision == "undo-3" and back.spec.pipeline == "basic"
    assert list(back.spec.table_entries) == list(v1.spec.table_entries)
    assert await device_state(stack) == before, "v1's cookie and v1's entries again, on both devices"

    history = await client.revisions("undo")
    assert [(r.metadata.name, r.spec.pipeline_digest) for r in history] == [
        ("undo-1", digests["basic"]), ("undo-2", digests["basic-v2"]), ("undo-3", digests["basic"])]
    assert history[1].spec.change_cause == "basic-v2 with a host route"
    assert list(history[0].spec.table_entries) == list(history[2].spec.table_entries)
    assert all(r.metadata.creation_timestamp.seconds for r in history)

    # --to-revision: back to 2 by its number
    await client.rollout_undo("undo", to_revision=2)
    again = await client.wait_rollout("undo", timeout=60)
    assert again.spec.pipeline == "basic-v2" and again.status.target_revision == "undo-4"
    assert {cookie for cookie, _ in (await device_state(stack)).values()} == {cookie_for_digest(digests["basic-v2"])}
    with pytest.raises(errors.NotFound):
        await client.rollout_undo("undo", to_revision=9)
    await remove(client, "undo")
    async with stack.store() as s:
        left, _ = await s.list(st.REVISIONS)
        assert [r.metadata.name for r in left if r.spec.deployment == "undo"] == [], \
            "deleting a deployment deletes its revisions"


async def test_canary_on_a_failing_revision_stops_at_its_first_step_and_rolls_back(stack, client):
    digests = await pipelines(client)
    canary = kr.UpdateStrategy(type="Canary", steps=[kr.CanaryStep(replicas=1), kr.CanaryStep(percent=100)],
                               progress_deadline_seconds=120, auto_rollback=True)
    v1 = await deploy(client, "canary", canary)
    before = await device_state(stack)
    async with stack.store() as s:
        start = await s.revision()

        def to_small(d: kr.Deployment) -> None:
            d.spec.pipeline = "small-v2"  # ipv4_lpm of size 1: the device refuses the second route
        await change(client, "canary", to_small)
        rolled = await progressing(client, "canary", cond.FALSE, "RolledBack", timeout=90)
        done = await client.get("deployment", "canary")
        assert "canary-2" in cond.get(done.status.conditions, "Progressing").message
        assert done.spec.pipeline == "basic" and list(done.spec.table_entries) == list(v1.spec.table_entries)
        assert rolled.status.rolled_back_from == "canary-2"

        async def settled():
            d = await client.get("deployment", "canary")
            return d if d.status.phase == "Running" and d.status.updated_replicas == 2 else None
        final = await eventually(settled, 60, 0.1, "the rolled-back revision Running on both replicas")
        assert final.status.target_revision == final.status.current_revision == "canary-3"
        assert cond.get(final.status.conditions, "Progressing").reason == "RolledBack"
        assert await device_state(stack) == before, "both devices hold v1's cookie and entries"

        # the rollout never went past its first step: at most one placement ever carried v2
        v2_replicas = set()
        end = await s.revision()
        async for etype, kv, _ in s.watch_raw(f"{st.ROOT}/".encode(), start + 1):  # every key: one is at `end`
            if etype != "DELETE" and kv.key.decode().startswith(st.PLACEMENTS.prefix()):
                p = kr.Placement.FromString(kv.value)
                if p.spec.pipeline_digest == digests["small-v2"]:
                    v2_replicas.add(p.spec.replica)
            if kv.mod_revision >= end:
                break
        assert len(v2_replicas) == 1, v2_replicas
    history = await client.revisions("canary")
    assert [r.spec.pipeline for r in history] == ["basic", "small-v2", "basic"]
    assert history[2].spec.change_cause == "rollback from revision canary-2"
    await remove(client, "canary")


async def test_canary_step_with_pause_waits_for_promote(stack, client):
    digests = await pipelines(client)
    v1_cookie, v2_cookie = cookie_for_digest(digests["basic"]), cookie_for_digest(digests["basic-v2"])
    strategy = kr.UpdateStrategy(type="Canary", steps=[kr.CanaryStep(replicas=1, pause=True),
                                                       kr.CanaryStep(percent=100)])
    await deploy(client, "paused", strategy)

    def to_v2(d: kr.Deployment) -> None:
        d.spec.pipeline = "basic-v2"
    await change(client, "paused", to_v2)
    waiting = await progressing(client, "paused", cond.UNKNOWN, "Paused")
    assert waiting.status.updated_replicas == 1 and waiting.status.canary_step == 0
    assert sorted(r.revision for r in waiting.status.replicas) == ["paused-1", "paused-2"]
    assert all(r.phase == "Running" for r in waiting.status.replicas)

    async def one_of_each():
        cookies = sorted((cookie for cookie, _ in (await device_state(stack)).values()), key=str)
        return cookies == sorted([v1_cookie, v2_cookie], key=str)
    await eventually(one_of_each, 30, 0.1, "one device on v2, the other still on v1")
    # it stays there: four agent resync periods (0.5 s) and the controller's passes move nothing more
    await asyncio.sleep(2)
    still = await client.get("deployment", "paused")
    assert still.status.updated_replicas == 1 and cond.get(still.status.conditions, "Progressing").reason == "Paused"
    assert await one_of_each()

    await client.rollout_promote("paused")
    done = await client.wait_rollout("paused", timeout=60)
    assert done.status.current_revision == "paused-2"
    assert {cookie for cookie, _ in (await device_state(stack)).values()} == {v2_cookie}
    await remove(client, "paused")


async def test_history_keeps_at_most_its_limit(stack, client):
    await pipelines(client)
    await deploy(client, "history", history=2)
    for port in range(5, 9):  # four changes of an entry: revisions 2..5
        def set_port(d: kr.Deployment, port=port) -> None:
            d.spec.table_entries[0].params[1].value = str(port)
        await change(client, "history", set_port)
        await client.wait_rollout("history", timeout=60)
        assert len(await client.revisions("history")) <= 2
    kept = await client.revisions("history")
    assert [r.metadata.name for r in kept] == ["history-4", "history-5"]
    assert kept[-1].spec.table_entries[0].params[1].value == "8"
    d = await client.get("deployment", "history")
    assert d.status.current_revision == d.status.target_revision == "history-5"
    with pytest.raises(errors.FailedPrecondition):  # a Recreate deployment has no canary step to pass
        await client.rollout_promote("history")
    await remove(client, "history")


async def test_the_rollout_commands(stack, client, capsys, monkeypatch):
    from kubep4.cli.main import main
    monkeypatch.setenv("KUBEP4_CONFIG", stack.client_config_path)  # the stack's admin

    def kubep4(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(["--api", stack.api, *argv])
        out = capsys.readouterr()
        return rc, out.out, out.err

    digests = await pipelines(client)
    await deploy(client, "cli")

    def to_v2(d: kr.Deployment) -> None:
        d.spec.pipeline = "basic-v2"
        d.metadata.annotations["kubep4.io/change-cause"] = "kubep4 apply v2"
    await change(client, "cli", to_v2)
    rc, out, _ = await asyncio.to_thread(kubep4, "rollout", "status", "deployment", "cli", "--timeout", "60s")
    assert rc == 0 and out.strip().splitlines()[-1] == "deployment cli successfully rolled out (revision cli-2)"
    rc, out, _ = await asyncio.to_thread(kubep4, "rollout", "history", "deployment", "cli")
    rows = [line.split() for line in out.strip().splitlines()[2:]]
    assert rc == 0 and [(r[0], r[1], r[2]) for r in rows] == [
        ("1", digests["basic"][:19], "basic"), ("2", digests["basic-v2"][:19], "basic-v2")]
    assert out.strip().splitlines()[-1].endswith("current,target   kubep4 apply v2")
    rc, out, _ = await asyncio.to_thread(kubep4, "rollout", "undo", "deployment", "cli")
    assert (rc, out.strip()) == (0, "deployment/cli rolled back")
    rc, out, _ = await asyncio.to_thread(kubep4, "rollout", "status", "deployment", "cli", "--timeout", "60s")
    assert rc == 0 and "(revision cli-3)" in out
    for verb in ("pause", "resume"):
        rc, out, _ = await asyncio.to_thread(kubep4, "rollout", verb, "deployment", "cli")
        assert (rc, out.strip()) == (0, f"deployment/cli {verb}d")
    assert "kubep4.io/paused" not in (await client.get("deployment", "cli")).metadata.annotations
    rc, _, err = await asyncio.to_thread(kubep4, "rollout", "promote", "deployment", "cli")
    assert rc == 1 and "is not a canary" in err
    rc, _, err = await asyncio.to_thread(kubep4, "rollout", "undo", "deployment", "cli", "--to-revision", "7")
    assert rc == 1 and "revision 7 of deployment default/cli not found" in err
    await remove(client, "cli")


# ------------------------------------------------------------------ RollingUpdate with max_surge
async def sample_device(reader, samples: list, stop: asyncio.Event) -> None:
    """Read one device as fast as it answers until ``stop`` (no arbitration: a reader never disturbs the
    agent): (start, end, (cookie, entries)) per read,
    on the monotonic clock (only to order the reads of different devices, never as a threshold)."""
    async with DeviceConnection(reader.address, reader.device_id, tls=reader.tls) as r:  # one channel: many reads
        while not stop.is_set():
            t0 = time.monotonic()
            cookie = await r.get_cookie()
            entries = await r.read_entries(timeout=reader.timeout)
            samples.append((t0, time.monotonic(),
                            (cookie, frozenset(e.SerializeToString(deterministic=True) for e in entries))))
            await asyncio.sleep(0.002)  # a poll interval, leaving the loop to the test's other calls


def proven_overlaps(samples: dict, complete: set) -> list[tuple]:
    """Moments two devices were both without a complete revision, as far as the reads prove it.

    A read that is not ``complete`` says its device was incomplete at some instant of the read.
    Consecutive incomplete reads of a device (a run, with no complete read between) say it was
    incomplete throughout from the end of the first to the start of the last (one change under way).
    Two devices were incomplete together when their runs' spans overlap, or when one's incomplete
    read lies wholly inside the other's span. Reads of different devices at about the same moment
    prove nothing either way, so a change that ends just before another begins is never counted."""
    spans, windows = {}, {}
    for dev, reads in samples.items():
        spans[dev], windows[dev], run = [], [], []
        for t0, t1, state in reads + [(None, None, next(iter(complete)))]:
            if state in complete:
                if len(run) > 1:
                    spans[dev].append((run[0][1], run[-1][0]))
                run = []
            else:
                run.append((t0, t1))
                windows[dev].append((t0, t1))
    out = []
    for a in samples:
        for b in samples:
            if a == b:
                continue
            for s0, s1 in spans[a]:
                out += [(a, b, (s0, s1), (u0, u1)) for u0, u1 in spans[b] if a < b and max(s0, u0) < min(s1, u1)]
                out += [(a, b, (s0, s1), (w0, w1)) for w0, w1 in windows[b] if s0 <= w0 and w1 <= s1]
    return out


HOSTS = 200  # v2's host routes in the max_surge tests


async def rolling_update(tmp_path, strategy: kr.UpdateStrategy) -> dict:
    """2 replicas of "surge" on 3 devices with ``strategy``, v1 -> v2, while independent readers
    sample each device and a client polls the deployment; returns what was seen."""
    with LocalStack(nodes=3, devices_per_node=1, data_dir=str(tmp_path), resync_seconds=0.5) as s:
        async with s.client() as c, s.store() as store:
            await store.revision()  # connected before the readers keep the loop busy
            digests = await pipelines(c)
            v1 = await deploy(c, "surge", strategy)
            assert len(v1.status.replicas) == 2
            readers = stack_readers(s.device_ports, tls=s.device_tls())
            before = await device_state(s)
            used = {(r.node, r.device) for r in v1.status.replicas}
            [v1_state] = {before[k] for k in used}
            [free] = set(readers) - used
            assert v1_state[0] == cookie_for_digest(digests["basic"]) and before[free] == (None, frozenset())

            samples = {k: [] for k in readers}
            statuses: list[kr.Deployment] = []
            stop = asyncio.Event()

            async def watch_status() -> None:
                while not stop.is_set():
                    statuses.append(await c.get("deployment", "surge"))
                    await asyncio.sleep(0.01)
            pollers = [asyncio.create_task(sample_device(r, samples[k], stop)) for k, r in readers.items()]
            pollers.append(asyncio.create_task(watch_status()))
            await eventually(lambda: all(samples.values()), 30, 0.01, "a first read of every device")

            def to_v2(d: kr.Deployment) -> None:  # many host routes: each device's change takes many reads
                d.spec.pipeline = "basic-v2"
                for i in range(HOSTS):
                    e = d.spec.table_entries.add()
                    e.CopyFrom(host_entry())
                    e.match[0].exact.value = f"10.0.{3 + i // 200}.{i % 200 + 1}"
            changed = await change(c, "surge", to_v2)
            done = await c.wait_rollout("surge", timeout=120)

            async def surge_gone():
                ps = [p for p in (await store.list(st.PLACEMENTS, "default"))[0] if p.spec.deployment == "surge"]
                return ps if sorted(p.spec.replica for p in ps) == [0, 1] else None
            left = await eventually(surge_gone, 60, 0.05, "no surge placement left")

            await eventually(lambda: samples[free][-1][2][1] == frozenset(), 30, 0.05,
                             "the free device read without entries")
            stop.set()
            await asyncio.gather(*pollers)
        after = await device_state(s)
    v2_state = after[next(iter(used))]
    assert v2_state[0] == cookie_for_digest(digests["basic-v2"]) and len(v2_state[1]) == len(v1_state[1]) + HOSTS
    assert {after[k] for k in used} == {v2_state}, "both replicas' devices on v2, with all its entries"
    assert {(p.spec.node, p.spec.device) for p in left} == used, "the replicas stayed on their devices"
    assert done.status.current_revision == "surge-2" and done.status.updated_replicas == 2
    assert not [r for r in done.status.replicas if r.surge]
    during = [d for d in statuses if d.metadata.generation == changed.metadata.generation
              and d.status.observed_generation == changed.metadata.generation]
    return {"samples": samples, "complete": {v1_state, v2_state}, "v2": v2_state, "free": free,
            "during": during, "statuses": statuses}


async def test_rolling_update_with_max_surge_keeps_every_replica_serving(tmp_path):
    """2 replicas on 3 devices, RollingUpdate max_unavailable 0 max_surge 1, v1 -> v2: the surge
    replica takes the free device first, and independent readers of the three devices never show
    two of them without a complete revision (v1's or v2's cookie with all its entries) at once, so
    two always serve; nor does the deployment's status ever count fewer than 2 ready. The end: both
    replicas on v2 on the devices they had, no surge placement left, the free device cleared."""
    seen = await rolling_update(tmp_path, kr.UpdateStrategy(type="RollingUpdate", max_unavailable=0, max_surge=1))
    samples, complete = seen["samples"], seen["complete"]
    assert any(state == seen["v2"] for _, _, state in samples[seen["free"]]), "the surge ran v2 on the free device"
    changing = [k for k, reads in samples.items() if k != seen["free"] and any(st_ not in complete for _, _, st_ in reads)]
    assert changing, "a replica's device was read while it changed (the control test below: such reads count)"
    overlaps = proven_overlaps(samples, complete)
    assert not overlaps, f"two devices without a complete revision at once: {overlaps[:3]}"
    during = seen["during"]
    assert during and min(d.status.ready_replicas for d in during) == 2, [d.status.ready_replicas for d in during]
    assert any(r.surge and r.replica == 2 for d in during for r in d.status.replicas), "the status showed the surge"
    assert all(d.status.ready_replicas <= 2 for d in seen["statuses"])


async def test_without_max_surge_the_same_check_sees_a_replica_missing(tmp_path):
    """The control: the same rollout with max_unavailable 0 and no max_surge (0 means 1, one replica
    at a time) leaves one device serving while the other changes, and the readers prove it."""
    seen = await rolling_update(tmp_path, kr.UpdateStrategy(type="RollingUpdate", max_unavailable=0))
    assert proven_overlaps(seen["samples"], seen["complete"]), "a replica's change seen with the free device empty"
