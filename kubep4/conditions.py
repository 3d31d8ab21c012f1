"""Knative-style conditions: Mark{True,False,Unknown}(reason, message), Ready derived from the others."""
from __future__ import annotations

from kubep4.gen.kubep4.v1 import resources_pb2 as kr

ADMITTED, SCHEDULED, INSTALLED, READY = "Admitted", "Scheduled", "Installed", "Ready"
DEPLOYMENT_CONDITIONS = (ADMITTED, SCHEDULED, INSTALLED, READY)
TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# Deployment phases, in the order a healthy deployment passes them
PENDING, SCHEDULED_PHASE, INSTALLING, RUNNING = "Pending", "Scheduled", "Installing", "Running"
FAILED, UNSCHEDULABLE, TERMINATING = "Failed", "Unschedulable", "Terminating"
DEGRADED = "Degraded"  # a replica's device does not answer; it runs again by itself when it does


def get(conditions, ctype: str) -> kr.Condition | None:
    for c in conditions:
        if c.type == ctype:
            return c
    return None


def mark(conditions, ctype: str, status: str, reason: str = "", message: str = "") -> bool:
    """Set a condition; the transition time moves only when status changes. Returns True if changed."""
    c = get(conditions, ctype)
    if c is None:
        c = conditions.add(type=ctype)
    if (c.status, c.reason, c.message) == (status, reason, message):
        return False
    if c.status != status:
        c.last_transition_time.GetCurrentTime()
    c.status, c.reason, c.message = status, reason, message
    return True


def mark_true(conditions, ctype: str, reason: str = "", message: str = "") -> bool:
    return mark(conditions, ctype, TRUE, reason or ctype, message)


def mark_false(conditions, ctype: str, reason: str, message: str = "") -> bool:
    return mark(conditions, ctype, FALSE, reason, message)


def mark_unknown(conditions, ctype: str, reason: str = "", message: str = "") -> bool:
    return mark(conditions, ctype, UNKNOWN, reason, message)


def initial_deployment_status(status: kr.DeploymentStatus) -> None:
    status.phase = PENDING
    mark_true(status.conditions, ADMITTED, "Admitted", "passed admission")
    for ctype in (SCHEDULED, INSTALLED, READY):
        mark_unknown(status.conditions, ctype, "Pending", "waiting for the controller")


def derive_ready(conditions) -> None:
    """Ready is True only when every other condition is True."""
    others = [get(conditions, t) for t in (ADMITTED, SCHEDULED, INSTALLED)]
    if all(c is not None and c.status == TRUE for c in others):
        mark_true(conditions, READY, "Ready")
        return
    bad = next((c for c in others if c is not None and c.status == FALSE), None)
    if bad is not None:
        mark_false(conditions, READY, bad.reason, bad.message)
    else:
        pending = next((c for c in others if c is None or c.status != TRUE), None)
        mark_unknown(conditions, READY, pending.reason if pending else "Pending",
                     pending.message if pending else "")
