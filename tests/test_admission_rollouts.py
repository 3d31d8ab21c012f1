"""Admission of the rollout fields (docs/rollouts.md): canary steps, the progress deadline and the
revision history limit, each violation with its field path; the defaults. Pure validation."""
from __future__ import annotations

import pytest

from kubep4.gen.kubep4.v1 import resources_pb2 as kr
from services.admission.validation import Policy, review_deployment

from .conftest import example_objects

PIPELINE, _ = example_objects()


def review(fn) -> tuple[kr.Deployment, list[tuple[str, str]]]:
    _, d = example_objects()
    d.spec.replicas = 4
    fn(d.spec)
    out, violations = review_deployment(d, PIPELINE, Policy())
    return out, [(v.field, v.description) for v in violations]


def steps(*kw) -> callable:
    def fn(s: kr.DeploymentSpec) -> None:
        s.strategy.type = "Canary"
        s.strategy.steps.extend(kr.CanaryStep(**k) for k in kw)
    return fn


def test_defaults():
    d, bad = review(lambda s: None)
    assert bad == []
    assert d.spec.revision_history_limit == 10 and d.spec.strategy.progress_deadline_seconds == 600
    d, bad = review(lambda s: setattr(s, "revision_history_limit", 0))
    assert bad == [] and d.spec.HasField("revision_history_limit") and d.spec.revision_history_limit == 0


def test_a_valid_canary():
    d, bad = review(steps({"replicas": 1, "pause": True}, {"percent": 50, "wait_ready_seconds": 30},
                          {"percent": 100}))
    assert bad == [] and d.spec.strategy.type == "Canary"


@pytest.mark.parametrize("fn,field,words", [
    (steps(), "spec.strategy.steps", "required for type Canary"),
    (steps({}), "spec.strategy.steps[0]", "exactly one of replicas or percent"),
    (steps({"replicas": 1, "percent": 50}), "spec.strategy.steps[0]", "exactly one of replicas or percent"),
    (steps({"replicas": 5}), "spec.strategy.steps[0].replicas", "between 1 and spec.replicas (4)"),
    (steps({"percent": 101}), "spec.strategy.steps[0].percent", "between 1 and 100"),
    (steps({"replicas": 1}, {"percent": -5}), "spec.strategy.steps[1].percent", "between 1 and 100"),
    (steps({"replicas": 1, "wait_ready_seconds": -1}), "spec.strategy.steps[0].wait_ready_seconds", "between 0"),
    (steps({"replicas": 1, "pause": True, "wait_ready_seconds": 5}), "spec.strategy.steps[0]", "not both"),
    (steps({"percent": 75}, {"replicas": 1}), "spec.strategy.steps[1]", "steps only grow"),
    (lambda s: s.strategy.steps.add(replicas=1), "spec.strategy.steps", "steps are for type Canary"),
    (lambda s: setattr(s.strategy, "progress_deadline_seconds", -1), "spec.strategy.progress_deadline_seconds",
     "between 1 and"),
    (lambda s: setattr(s, "revision_history_limit", -1), "spec.revision_history_limit", "between 0 and 1000"),
    (lambda s: setattr(s.strategy, "type", "BlueGreen"), "spec.strategy.type", "Canary, Recreate, RollingUpdate"),
])
def test_violations_name_their_field(fn, field, words):
    _, bad = review(fn)
    assert [f for f, _ in bad] == [field], bad
    assert words in bad[0][1]


def rolling(**kw) -> callable:
    def fn(s: kr.DeploymentSpec) -> None:
        s.strategy.type = kw.pop("type", "RollingUpdate")
        for k, v in kw.items():
            setattr(s.strategy, k, v)
    return fn


@pytest.mark.parametrize("fn", [rolling(max_surge=1), rolling(max_surge=1, max_unavailable=0),
                                rolling(max_surge=0, max_unavailable=1), rolling(max_surge=4), rolling()])
def test_valid_max_surge(fn):
    _, bad = review(fn)
    assert bad == []


@pytest.mark.parametrize("fn,words", [
    (rolling(max_surge=-1), "must be 0 or more, got -1"),
    (rolling(max_surge=5), "at most spec.replicas (4)"),
    (rolling(max_surge=0), "may not be 0 when max_unavailable is 0"),
    (rolling(max_surge=0, max_unavailable=0), "may not be 0 when max_unavailable is 0"),
    (rolling(max_surge=1, type="Recreate"), "max_surge is for type RollingUpdate, not 'Recreate'"),
])
def test_max_surge_violations_name_their_field(fn, words):
    _, bad = review(fn)
    assert [f for f, _ in bad] == ["spec.strategy.max_surge"], bad
    assert words in bad[0][1], bad
