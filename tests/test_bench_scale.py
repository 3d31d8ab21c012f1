"""`kubep4 bench scale` in a tiny configuration: the real etcd, apiserver, admission and controller as
processes, against hollow nodes (the real node agent with in-memory devices). Checks the output is
well-formed, every deployment reached Running, and no hollow node was told about another node's
placements. No timings are asserted."""
from __future__ import annotations

import json

from .test_bench import run_cli

NODES, DEVICES, DEPLOYMENTS = 3, 2, 6


def test_bench_scale_small(tmp_path):
    out = tmp_path / "scale.json"
    r = run_cli("bench", "scale", "--nodes", str(NODES), "--devices-per-node", str(DEVICES),
                "--deployments", str(DEPLOYMENTS), "--rate", "20", "--timeout", "60", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())

    c = result["config"]
    assert (c["nodes"], c["devices_per_node"], c["deployments"]) == (NODES, DEVICES, DEPLOYMENTS)
    assert c["slots_per_device"] >= 1 and "commit" in c
    assert result["created"] == result["running"] == DEPLOYMENTS
    assert result["error_count"] == 0 and result["errors"] == []
    lat = result["latency_ms"]
    assert lat["n"] == DEPLOYMENTS and 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert result["create_rate_achieved"] > 0 and result["deployments_per_s"] > 0
    assert result["cpu_ms_per_deployment"] > 0

    d = result["controller_decisions"]
    assert d["decisions"] >= DEPLOYMENTS  # one per replica placed (a retry may add some)
    assert d["decisions_per_s"] > 0 and d["decision_capacity_per_s"] > 0
    assert {"p50", "p99"} <= set(d["schedule_ms"])
    for name in ("controller", "apiserver"):
        p = result[name]
        assert p["cpu_s"] >= 0 and p["cpu_s_total"] > 0 and p["rss_mib"] > 0 and p["peak_rss_mib"] >= p["rss_mib"]
    assert {"etcd", "apiserver", "admission", "controller-0", "hollow"} <= set(result["processes"])
    assert result["etcd"]["db_bytes"] > 0

    w = result["watch"]
    per_node = w["per_node"]
    assert set(per_node) == {f"hollow-{i}" for i in range(NODES)}
    # each node's informer watches its own shard only: no delivery about another node's placements
    assert all(n["foreign"] == 0 for n in per_node.values()), per_node
    assert w["foreign_events"] == 0
    # every placement was delivered (ADDED) to exactly the node it was placed on
    assert sum(n.get("ADDED", 0) for n in per_node.values()) == DEPLOYMENTS
    assert w["events"] == sum(n["events"] for n in per_node.values())
    assert w["events_per_deployment"] == w["events"] / DEPLOYMENTS
    assert "create->Running ms" in r.stdout and "about another node's placements" in r.stdout
