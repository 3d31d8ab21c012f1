"""A deployment's trace as a per-hop waterfall: hop, service, start offset, duration, share of the total."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Hop:
    hop: str
    service: str
    depth: int
    start_ms: float
    duration_ms: float
    share: float  # duration / total trace duration
    span_id: str
    parent_id: str


def from_jaeger(trace: dict) -> list[Hop]:
    """Rows from one trace of Jaeger's query API (``data[0]`` of GET /api/traces/{id})."""
    spans = trace.get("spans") or []
    if not spans:
        return []
    services = {pid: p.get("serviceName", "?") for pid, p in (trace.get("processes") or {}).items()}
    ids = {s["spanID"] for s in spans}

    def parent(s: dict) -> str:
        for ref in s.get("references") or []:
            if ref.get("refType") == "CHILD_OF" and ref.get("spanID") in ids:
                return ref["spanID"]
        return ""

    start = min(s["startTime"] for s in spans)
    end = max(s["startTime"] + s["duration"] for s in spans)
    total = max(end - start, 1)
    children: dict[str, list[dict]] = {}
    for s in spans:
        children.setdefault(parent(s), []).append(s)
    rows: list[Hop] = []

    def walk(pid: str, depth: int) -> None:
        for s in sorted(children.get(pid, []), key=lambda x: (x["startTime"], -x["duration"])):
            rows.append(Hop(s["operationName"], s.get("serviceName") or services.get(s.get("processID"), "?"),
                            depth, (s["startTime"] - start) / 1000, s["duration"] / 1000, s["duration"] / total,
                            s["spanID"], pid))
            walk(s["spanID"], depth + 1)
    walk("", 0)
    return rows


def render(rows: list[Hop], width: int = 40) -> str:
    if not rows:
        return "no spans"
    total_ms = max(r.start_ms + r.duration_ms for r in rows)
    name_w = max(len("  " * r.depth + r.hop) for r in rows)
    svc_w = max(len(r.service) for r in rows)
    lines = [f"{'HOP':<{name_w}}  {'SERVICE':<{svc_w}}  {'START ms':>9}  {'DURATION ms':>11}  {'SHARE':>6}  TIMELINE"]
    for r in rows:
        a = int(width * r.start_ms / total_ms) if total_ms else 0
        b = max(1, int(round(width * r.duration_ms / total_ms))) if total_ms else 1
        bar = " " * a + "█" * min(b, width - a)
        lines.append(f"{'  ' * r.depth + r.hop:<{name_w}}  {r.service:<{svc_w}}  {r.start_ms:>9.2f}  "
                     f"{r.duration_ms:>11.2f}  {100 * r.share:>5.1f}%  |{bar:<{width}}|")
    lines.append(f"total {total_ms:.2f} ms over {len({r.service for r in rows})} services, {len(rows)} spans")
    return "\n".join(lines)


def to_json(rows: list[Hop]) -> list[dict]:
    return [asdict(r) for r in rows]
