"""`kubep4 bench faults` on one fault with a few deployments: its report agrees with what the API and
the devices show."""
from __future__ import annotations

from kubep4.bench import faults
from kubep4.bench.p4read import stack_readers
from kubep4.p4 import P4InfoIndex, cookie_for_digest, p4r, parse_p4info, to_p4_entry

from .conftest import example_objects


async def test_an_etcd_kill_mid_stream_loses_nothing_and_the_report_matches_the_api(tmp_path):
    seen: dict = {}

    async def inspect(stack, result):
        async with stack.client() as c:
            seen["api"] = {d.metadata.name: d for d in await c.list("deployments")}
        readers = stack_readers(stack.device_ports, tls=stack.device_tls())
        seen["entries"] = {k: len(await r.entries()) for k, r in readers.items()}

    r = await faults.run_fault("etcd", count=8, seconds=2.0, timeout=60.0, delete_every=4,
                               data_dir=str(tmp_path), progress=lambda _: None, inspect=inspect)
    assert r["converged"], r
    assert r["target"] == "etcd" and r["restarts"] >= 1
    assert any(line.startswith("restarted etcd (exit -9)") for line in r["supervisor"])
    assert r["acknowledged"] == 8 and r["unacknowledged"] == 0
    assert (r["lost"], r["duplicated"], r["stuck"], r["stray_entries"]) == (0, 0, 0, 0), r["problems"]
    assert r["acknowledged"] == r["running"] + r["deleted"] and r["deleted"] == 2
    api = seen["api"]
    assert sorted(api) == [f"fault-{i:03d}" for i in range(8) if i % 4 != 3]
    assert sum(d.status.phase == "Running" for d in api.values()) == r["running"]
    assert all(d.status.ready_replicas == 2 for d in api.values())
    assert sum(seen["entries"].values()) == r["running"] * 2 * 2  # 2 replicas x 2 entries each
    assert r["convergence_s"] >= 0 and r["restart_s"] is not None and r["restart_s"] <= r["convergence_s"]
    assert faults.render_row(r).split()[:3] == ["etcd", "mid", "etcd"] and not faults.failed(r)


async def test_an_agent_killed_on_a_quiet_stack_undoes_nothing(tmp_path):
    """Everything converged, then node-0's agent dies and comes back: its devices keep their entries."""
    r = await faults.run_fault("agent", count=4, seconds=1.0, timeout=60.0, delete_every=0, when="quiet",
                               data_dir=str(tmp_path), progress=lambda _: None)
    assert r["when"] == "quiet" and r["target"] == "agent-0" and r["restarts"] >= 1
    assert r["converged"] and r["running"] == 4, r
    assert (r["lost"], r["duplicated"], r["stuck"], r["stray_entries"]) == (0, 0, 0, 0), r["problems"]


class FakeDevice:
    def __init__(self, cookie, entries):
        self.cookie, self.held = cookie, entries

    async def pipeline(self):
        return None if self.cookie is None else p4r.ForwardingPipelineConfig(
            cookie=p4r.ForwardingPipelineConfig.Cookie(cookie=self.cookie))

    async def entries(self):
        return self.held


class FakeAPI:
    def __init__(self, deployments):
        self.deployments = deployments

    async def list(self, kind, namespace=""):
        return self.deployments


async def test_the_checks_give_each_deployment_one_verdict():
    pipeline, template = example_objects()
    ds = [faults.deployment_for(template, i, 2) for i in range(8)]
    expected = faults.expected_entries(pipeline, ds)
    index = P4InfoIndex(parse_p4info(pipeline.spec.artifacts.p4info))
    digest = "sha256:" + "ab" * 32
    a, b, c = ("node-0", "dev0"), ("node-1", "dev0"), ("node-1", "dev1")

    def entries(i):
        return [to_p4_entry(e, index) for e in ds[i].spec.table_entries]

    def running(i, devices, phase="Running"):
        d = ds[i]
        d.metadata.generation = d.status.observed_generation = 1
        d.status.phase, d.status.pipeline_digest = phase, digest
        d.status.ready_replicas = 2 if phase == "Running" else 0
        for node, dev in devices:
            d.status.replicas.add(node=node, device=dev)
        return d
    stray = entries(0)[0]
    stray.match[0].lpm.value = bytes([192, 0, 2, 0])
    cookie = cookie_for_digest(digest)
    devices = {
        a: FakeDevice(cookie, entries(0) + entries(1)[:1] + entries(2) + entries(3) + [stray]),
        b: FakeDevice(cookie, entries(0) + entries(1) + entries(3)),
        c: FakeDevice(None, entries(3)),
    }
    api = FakeAPI([running(0, [a, b]),            # running
                   running(1, [a, b]),            # lost: a misses one of its entries
                   running(3, [a, b]),            # duplicated: its entries on c as well
                   running(4, [a, b], "Installing"),  # stuck
                   running(7, [a, b, c])])        # duplicated (3 replicas for 2) and lost (c: no pipeline)
    ops = [faults.Op(f"fault-{i:03d}", delete=i in (2, 5), acknowledged=i != 6, deleted=i in (2, 5))
           for i in range(8)]
    got = await faults.check(api, devices, ops, expected, 2)
    assert got.verdicts == {"fault-000": "running", "fault-001": "lost", "fault-002": "lost",  # on a
                            "fault-003": "duplicated", "fault-004": "stuck", "fault-005": "deleted",
                            "fault-007": "lost"}  # fault-006 was never acknowledged
    assert got.stray_entries == 1 and not got.passed()
    assert any("fault-007: 3 replicas listed for 2" in p for p in got.problems)
