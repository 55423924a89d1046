"""Data summaries of re-ID splits for reports and logs."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fedfr.reid.data.records import ReidSplit

PARTS = ("train", "query", "gallery")


def split_summary(split: ReidSplit) -> dict[str, Any]:
    """Counts per part: images, identities (pid 0 distractors counted apart), cameras, images per
    camera (camid -> count), and the query identities that have no gallery image from another
    camera (they cannot be matched under the Market protocol)."""
    out: dict[str, Any] = {"name": split.name, "root": str(split.root),
                           "meta": {k: v for k, v in split.meta.items() if k != "spec"}}
    for part in PARTS:
        recs = getattr(split, part)
        pids = {r.pid for r in recs}
        out[part] = {
            "images": len(recs),
            "ids": len(pids - {0}),
            "distractor-images": sum(1 for r in recs if r.pid == 0),
            "cams": len({r.camid for r in recs}),
            "images-per-cam": dict(sorted(Counter(r.camid for r in recs).items())),
        }
    gal = {(r.pid, r.camid) for r in split.gallery}
    gal_cams: dict[int, set[int]] = {}
    for pid, cam in gal:
        gal_cams.setdefault(pid, set()).add(cam)
    out["query-without-cross-camera-match"] = sum(
        1 for q in split.query if not (gal_cams.get(q.pid, set()) - {q.camid}))
    return out


def format_summary(split: ReidSplit) -> str:
    """A small Markdown table of :func:`split_summary`."""
    s = split_summary(split)
    lines = [f"{split.name} ({s['root']})", "",
             "| part | images | ids | distractor images | cameras | images per camera |",
             "|---|---:|---:|---:|---:|---|"]
    for part in PARTS:
        p = s[part]
        per = ", ".join(f"{c}:{n}" for c, n in p["images-per-cam"].items())
        lines.append(f"| {part} | {p['images']} | {p['ids']} | {p['distractor-images']} | "
                     f"{p['cams']} | {per} |")
    lines.append("")
    lines.append(f"queries without a cross-camera match: {s['query-without-cross-camera-match']}")
    return "\n".join(lines)
