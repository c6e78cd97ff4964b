#!/usr/bin/env python3
"""Draws the dashboard's panels from real query results, where no Grafana can run.

    RELEASE_EDGE_DASHBOARD_DATA=/tmp/dashboard-data.json \\
        cargo test --test it prometheus::            # the end-to-end run saves every query's results
    pip install matplotlib
    python3 deploy/observability/plot.py /tmp/dashboard-data.json deploy/observability/dashboard.png

Each panel of release-edge.dashboard.json becomes one plot, its series named by the
panel's legend format, over the test's run: healthy traffic, then the store's host gone
and GitHub rate-limiting (the dashed line).
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent


def legend(fmt: str, labels: dict) -> str:
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    return text.strip() or "value"


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    data = json.loads(Path(sys.argv[1]).read_text())
    board = json.loads((HERE / "release-edge.dashboard.json").read_text())
    start = float(data["start"])
    results = iter(data["queries"])
    panels = [p for p in board["panels"] if p.get("targets")]
    columns = 4
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.2 * rows))
    failure_at = None
    for axis, panel in zip(axes.flat, panels):
        for target in panel["targets"]:
            saved = next(results)
            assert saved["title"] == panel["title"], (saved["title"], panel["title"])
            for series in saved["result"]:
                points = [(float(t) - start, float(v)) for t, v in series["values"]]
                points = [(t, v) for t, v in points if math.isfinite(v)]
                if not points:
                    continue
                xs, ys = zip(*points)
                axis.plot(xs, ys, label=legend(target["legendFormat"], series["metric"]))
            if panel["title"] == "Store circuit open":
                opened = [
                    float(t) - start
                    for s in saved["result"]
                    for t, v in s["values"]
                    if float(v) >= 1
                ]
                failure_at = min(opened) if opened else None
        axis.set_title(panel["title"], fontsize=9)
        axis.tick_params(labelsize=7)
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        axis.set_ylabel(unit, fontsize=7)
        if axis.lines and len(axis.lines) <= 8:
            axis.legend(fontsize=6, loc="upper left")
    for axis in axes.flat[len(panels):]:
        axis.axis("off")
    if failure_at is not None:
        for axis in axes.flat[: len(panels)]:
            axis.axvline(failure_at, color="grey", linestyle="--", linewidth=0.8)
    fig.suptitle(
        "release-edge dashboard queries over the end-to-end test "
        "(x: seconds since Prometheus started; dashed: the store's circuit opens)",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(sys.argv[2], dpi=80)
    print(f"wrote {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
