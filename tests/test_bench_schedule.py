"""The scheduling benchmark on a small configuration: shape and consistency, no timings."""
from __future__ import annotations

import json

import pytest

from kubep4.bench import schedule as bench
from services.controller.scheduling import REASONS

TIMING_KEYS = ("decisions_per_s", "schedule_s", "index_build_s")


@pytest.fixture(scope="module")
def result() -> dict:
    return bench.run(sizes=(20, 40), deployments=30, seed=3)


def _untimed(result: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in result["results"]]


def test_result_shape(result):
    assert result["seed"] == 3 and result["sizes"] == [20, 40]
    assert result["policies"] == ["builtin", "kubernetes"]
    assert [(r["size"], r["policy"]) for r in result["results"]] == [
        (20, "builtin"), (20, "kubernetes"), (40, "builtin"), (40, "kubernetes")]
    for r in result["results"]:
        assert r["nodes"] == r["size"] and r["devices"] >= r["nodes"] and r["deployments"] == 30
        assert r["requests"] >= r["deployments"]
        for key in ("success_rate", "pipeline_reuse_rate", "spread"):
            assert 0.0 <= r[key] <= 1.0, key
        bal = r["balance"]
        assert 0.0 <= bal["mean"] <= 1.0 and bal["stddev"] >= 0 and bal["cv"] >= 0
        assert 0.0 <= bal["max_min"] <= 1.0
        assert r["decisions_per_s"] > 0 and r["schedule_s"] >= 0 and r["index_build_s"] >= 0
        fails = r["failures"]
        assert set(fails) == {"unschedulable", "install"}
        assert set(fails["unschedulable"]) <= set(REASONS) | {"NoDevices"}
        assert set(fails["install"]) <= set(REASONS)
        assert r["scheduled"] + sum(fails["unschedulable"].values()) + sum(fails["install"].values()) \
            == r["requests"]
        assert r["failed"] == r["requests"] - r["scheduled"]
        assert r["success_rate"] == pytest.approx(r["scheduled"] / r["requests"])
        assert r["multi_replica_deployments"] <= r["deployments"]
        if r["policy"] == "builtin":
            assert fails["install"] == {}   # the P4-aware policy never picks an uninstallable device
    json.dumps(result)                      # JSON-serialisable


def test_same_stream_for_every_policy(result):
    by_size: dict[int, list[dict]] = {}
    for r in result["results"]:
        by_size.setdefault(r["size"], []).append(r)
    for rows in by_size.values():
        assert len({(r["requests"], r["devices"], r["ready_slots"]) for r in rows}) == 1


def test_deterministic_except_timings(result):
    again = bench.run(sizes=(20, 40), deployments=30, seed=3)
    assert _untimed(again) == _untimed(result)
    other = bench.run(sizes=(20,), deployments=30, seed=4, policies=("builtin",))
    assert len(other["results"]) == 1


def test_render_table(result):
    text = bench.render_table(result)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["nodes", "devices", "policy"]
    assert sum(1 for line in lines if " builtin " in line and line.lstrip().startswith(("20", "40"))) >= 2
    assert "kubernetes" in text and "%" in text


def test_cluster_and_stream_generators():
    nodes = bench.make_cluster(50, seed=1)
    assert len(nodes) == 50 and all(1 <= len(n.spec.devices) <= 4 for n in nodes)
    assert all(1 <= d.pipeline_slots <= 4 for n in nodes for d in n.spec.devices)
    assert {n.status.phase for n in nodes} <= {"Ready", "NotReady"}
    assert bench.make_cluster(50, seed=1) == nodes
    events = bench.make_stream(50, 40, seed=1)
    creates = [e for kind, e in events if kind == "create"]
    assert len(creates) == 40 and all(1 <= c.replicas <= 5 for c in creates)
    assert all(0 <= e < 40 for kind, e in events if kind == "delete")


def test_main_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--sizes", "10", "--deployments", "5", "--seed", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "builtin" in printed and "kubernetes" in printed
    data = json.loads(out.read_text())
    assert data["sizes"] == [10] and len(data["results"]) == 2
    assert bench.main(["--sizes", "10", "--deployments", "5", "--policies", "builtin", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["policies"] == ["builtin"]
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "ten"])
