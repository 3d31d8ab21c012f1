"""`kubep4 rollout status|history|undo|pause|resume|promote deployment NAME`, as `kubectl rollout`
(docs/rollouts.md)."""
from __future__ import annotations

import sys
from datetime import datetime, timezone

import yaml

from kubep4 import errors, manifest
from kubep4.client import kind_of


def register(sub) -> None:
    r = sub.add_parser("rollout", help="manage a deployment's rollout: status, history, undo, pause, resume, promote")
    verbs = r.add_subparsers(dest="verb", required=True)

    def target(sp, fn):
        sp.add_argument("kind", metavar="deployment", help="deployment (the only kind with rollouts)")
        sp.add_argument("name")
        sp.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's, else default)")
        sp.set_defaults(fn=fn)
        return sp

    from kubep4.cli.main import _duration
    s = target(verbs.add_parser("status", help="wait for the rollout to finish, printing its progress"), cmd_status)
    s.add_argument("--timeout", type=_duration, default=300.0, help="e.g. 30s, 5m (default 5m)")
    s.add_argument("-w", "--watch", default="true", choices=["true", "false"],
                   help="false: print the state now and exit (0 complete, 1 otherwise)")
    h = target(verbs.add_parser("history", help="the deployment's revisions"), cmd_history)
    h.add_argument("--revision", type=int, default=0, help="show this revision in full")
    u = target(verbs.add_parser("undo", help="go back to the previous revision (or --to-revision N)"), cmd_undo)
    u.add_argument("--to-revision", type=int, default=0, help="the revision number (kubep4 rollout history)")
    target(verbs.add_parser("pause", help="move no more replicas to the new revision"), cmd_pause)
    target(verbs.add_parser("resume", help="go on with a paused rollout"), cmd_resume)
    target(verbs.add_parser("promote", help="let a canary past the step it waits at"), cmd_promote)


def _check_kind(args) -> None:
    if kind_of(args.kind) != "deployment":
        raise errors.InvalidArgument(f"rollouts are of deployments, not {args.kind}")


def cmd_status(c, args) -> int:
    _check_kind(args)
    from kubep4.client import rollout_state
    if args.watch == "false":
        done, _, message = rollout_state(c.get("deployment", args.name, args.namespace))
        print(message)
        return 0 if done else 1
    try:
        c.wait_rollout(args.name, args.namespace, args.timeout, progress=lambda m: print(m, flush=True))
    except errors.FailedPrecondition as e:  # stopped or rolled back: the message was printed
        print(f"error: rollout of deployment {args.name} did not complete: {e.message}", file=sys.stderr)
        return 1
    return 0


def _time(ts) -> str:
    return datetime.fromtimestamp(ts.seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts.seconds else "-"


def cmd_history(c, args) -> int:
    _check_kind(args)
    d = c.get("deployment", args.name, args.namespace)
    revs = c.revisions(args.name, args.namespace)
    if args.revision:
        rev = next((r for r in revs if r.spec.revision == args.revision), None)
        if rev is None:
            raise errors.NotFound(f"revision {args.revision} of deployment {args.name} not found")
        print(yaml.safe_dump(manifest.to_dict(rev), sort_keys=False).rstrip())
        return 0
    print(f"deployment/{args.name}")
    rows = [["REVISION", "DIGEST", "PIPELINE", "CREATED", "STATE", "CHANGE-CAUSE"]]
    for r in revs:
        state = ",".join(w for w, name in (("current", d.status.current_revision), ("target", d.status.target_revision))
                         if name == r.metadata.name) or "-"
        rows.append([str(r.spec.revision), r.spec.pipeline_digest[:19], r.spec.pipeline,
                     _time(r.metadata.creation_timestamp), state, r.spec.change_cause or "<none>"])
    from kubep4.cli.main import _table
    print(_table(rows))
    return 0


def cmd_undo(c, args) -> int:
    _check_kind(args)
    before = c.get("deployment", args.name, args.namespace)
    d = c.rollout_undo(args.name, args.to_revision, args.namespace)
    if d.metadata.generation == before.metadata.generation:
        print(f"deployment/{args.name} skipped rollback (the spec already has that revision's content)")
    else:
        print(f"deployment/{args.name} rolled back")
    return 0


def cmd_pause(c, args) -> int:
    _check_kind(args)
    c.rollout_pause(args.name, args.namespace)
    print(f"deployment/{args.name} paused")
    return 0


def cmd_resume(c, args) -> int:
    _check_kind(args)
    c.rollout_resume(args.name, args.namespace)
    print(f"deployment/{args.name} resumed")
    return 0


def cmd_promote(c, args) -> int:
    _check_kind(args)
    d = c.rollout_promote(args.name, args.namespace)
    print(f"deployment/{args.name} promoted (canary step {d.status.canary_step + 1} of revision "
          f"{d.status.target_revision})")
    return 0
