#!/usr/bin/env python3
"""The release-edge Grafana dashboard, as code (grafana-foundation-sdk).

    python3 dashboard.py                  # writes release-edge.dashboard.json beside this file
    python3 dashboard.py --check          # fails when the committed JSON is not what this makes,
                                          # or when a panel breaks the rules below
    python3 dashboard.py --rules FILE     # every panel query as a Prometheus recording rule, with
                                          # Grafana's variables filled in, for `promtool check rules`

Rules every panel follows (checked by --check): each query is PromQL on the `datasource`
variable (no data source UID anywhere), and each selects `job=~"$job", instance=~"$instance"`
so that one dashboard serves every deployment. Which metric names exist is checked against a
running server by the integration test `tests/it/prometheus.rs`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "release-edge.dashboard.json"

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# What Grafana puts in for its own variables when the queries are checked outside Grafana:
# every job and instance, a rate window of a few scrape intervals, an hour of range.
VARIABLE_VALUES = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$job": ".*",
    "$instance": ".*",
}

GIB = "1073741824"
HIT_OR_STALE = 'result=~"hit|stale"'
CLIENT_OR_SERVER_ERROR = 'status=~"4..|5.."'
SERVER_ERROR = 'status=~"5.."'
UP_TO_DATE = 'outcome="none"'


def m(name: str, matchers: str = "") -> str:
    """A selector of `name` restricted to the dashboard's job and instance."""
    extra = f", {matchers}" if matchers else ""
    return f'{name}{{job=~"$job", instance=~"$instance"{extra}}}'


def rate(name: str, matchers: str = "", window: str = "$__rate_interval") -> str:
    return f"rate({m(name, matchers)}[{window}])"


@dataclass
class Query:
    expr: str
    legend: str


@dataclass
class Panel:
    title: str
    description: str
    queries: list[Query]
    unit: str = "short"
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    stacked: bool = False
    thresholds: list[tuple[float | None, str]] = field(default_factory=list)


ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Update checks",
        [
            Panel(
                "Update checks/s by protocol and outcome",
                "Answered update checks. `update`: a newer release was offered; `none`: the "
                "client is up to date. A drop to zero means the feed URL broke somewhere.",
                [
                    Query(
                        f"sum by (protocol, outcome) ({rate('release_edge_update_checks_total')})",
                        "{{protocol}} {{outcome}}",
                    )
                ],
                unit="reqps",
                stacked=True,
            ),
            Panel(
                "Origin requests/s by origin and outcome",
                "Reads from the store and GitHub Releases. `error`, `timeout` and "
                "`rate_limited` are what the alerts watch.",
                [
                    Query(
                        f"sum by (origin, outcome) ({rate('release_edge_origin_requests_total')})",
                        "{{origin}} {{outcome}}",
                    )
                ],
                unit="reqps",
            ),
            Panel(
                "Fallbacks/s by reason",
                "Answers that did not come from the store: GitHub because the store lacked the "
                "object (`missing`), failed (`error`, `timeout`) or had its circuit open "
                "(`circuit_open`); a last good copy because every origin failed (`stale`).",
                [
                    Query(
                        f"sum by (reason) ({rate('release_edge_fallback_total')})",
                        "{{reason}}",
                    )
                ],
                unit="reqps",
                stacked=True,
            ),
            Panel(
                "Cache hit ratio",
                "Share of cache lookups answered from memory (`hit`, and `stale` answered while "
                "revalidating) rather than by an origin read.",
                [
                    Query(
                        f"sum by (cache) ({rate('release_edge_cache_lookups_total', HIT_OR_STALE)})"
                        f" / sum by (cache) ({rate('release_edge_cache_lookups_total')})",
                        "{{cache}}",
                    )
                ],
                unit="percentunit",
            ),
            Panel(
                "Ready",
                "`/readyz`: an origin answered within `server.readiness_interval` (1), or none "
                "did (0). The lowest instance is shown.",
                [Query(f"min({m('release_edge_ready')})", "ready")],
                unit="bool_yes_no",
                kind="stat",
                width=6,
                thresholds=[(None, "red"), (1, "green")],
            ),
            Panel(
                "Store circuit open",
                "1 while any instance has stopped asking the store after repeated failures.",
                [Query(f"max({m('release_edge_store_circuit_open')})", "open")],
                unit="bool_yes_no",
                kind="stat",
                width=6,
                thresholds=[(None, "green"), (1, "red")],
            ),
        ],
    ),
    (
        "HTTP",
        [
            Panel(
                "Latency p50 / p99 by route",
                "Time from request to response headers (a download's streaming time is not in "
                "it), by matched route.",
                [
                    Query(
                        "histogram_quantile(0.5, sum by (route, le) "
                        f"({rate('release_edge_http_request_duration_seconds_bucket')}))",
                        "p50 {{route}}",
                    ),
                    Query(
                        "histogram_quantile(0.99, sum by (route, le) "
                        f"({rate('release_edge_http_request_duration_seconds_bucket')}))",
                        "p99 {{route}}",
                    ),
                ],
                unit="s",
            ),
            Panel(
                "4xx / 5xx responses/s by route and status",
                "Client errors (bad paths, unknown versions) and server errors. The alert fires "
                "on the 5xx share of all responses.",
                [
                    Query(
                        "sum by (route, status) "
                        f"({rate('release_edge_http_requests_total', CLIENT_OR_SERVER_ERROR)})",
                        "{{status}} {{route}}",
                    ),
                ],
                unit="reqps",
            ),
            Panel(
                "5xx share of responses",
                "Server errors as a share of every response.",
                [
                    Query(
                        f"sum({rate('release_edge_http_requests_total', SERVER_ERROR)})"
                        f" / sum({rate('release_edge_http_requests_total')})",
                        "5xx share",
                    )
                ],
                unit="percentunit",
            ),
            Panel(
                "In-flight downloads",
                "Artifact bodies being streamed right now, by instance.",
                [
                    Query(
                        f"sum by (instance) ({m('release_edge_inflight_downloads')})",
                        "{{instance}}",
                    )
                ],
                stacked=True,
            ),
        ],
    ),
    (
        "Bytes and cost",
        [
            Panel(
                "Bytes/s served by route",
                "Response body bytes handed to clients (every route behind the request layers).",
                [
                    Query(
                        f"sum by (route) ({rate('release_edge_response_bytes_total')})",
                        "{{route}}",
                    )
                ],
                unit="Bps",
                stacked=True,
            ),
            Panel(
                "Bytes/s served by origin and kind",
                "Manifests and artifacts by where they came from: the store, GitHub (streamed), a "
                "last good copy (`stale`), or the manifest cache (update feeds, `cache`). "
                "`redirect`: bytes handed to another host by a redirect, when their size is known.",
                [
                    Query(
                        f"sum by (origin, kind) ({rate('release_edge_served_bytes_total')})",
                        "{{origin}} {{kind}}",
                    )
                ],
                unit="Bps",
                stacked=True,
            ),
            Panel(
                "Estimated egress cost per day",
                "Response bytes at the current rate, over a day, times `cost.egress_per_gib` "
                "(in that price's currency). No data: the price is not configured.",
                [
                    Query(
                        f"sum({rate('release_edge_response_bytes_total')}) * 86400 / {GIB}"
                        f" * max({m('release_edge_egress_cost_per_gib')})",
                        "per day",
                    )
                ],
                unit="none",
            ),
            Panel(
                "Estimated egress cost over the time range",
                "Response bytes over the dashboard's range times `cost.egress_per_gib`.",
                [
                    Query(
                        f"sum(increase({m('release_edge_response_bytes_total')}[$__range])) / {GIB}"
                        f" * max({m('release_edge_egress_cost_per_gib')})",
                        "cost",
                    )
                ],
                unit="none",
                kind="stat",
                width=6,
            ),
            Panel(
                "Egress over the time range",
                "Response bytes over the dashboard's range.",
                [
                    Query(
                        f"sum(increase({m('release_edge_response_bytes_total')}[$__range]))",
                        "bytes",
                    )
                ],
                unit="bytes",
                kind="stat",
                width=6,
            ),
        ],
    ),
    (
        "Adoption",
        [
            Panel(
                "Update checks by the version clients run, per channel",
                "Which versions are in the field: checks per second by the client's own "
                "version (each client checks on a schedule, so the share of checks is the share "
                "of active clients). Versions the store does not hold count as `other`.",
                [
                    Query(
                        "sum by (channel, version) "
                        f"({rate('release_edge_client_versions_total', window='1h')})",
                        "{{channel}} {{version}}",
                    )
                ],
                unit="reqps",
                stacked=True,
            ),
            Panel(
                "Share of checks already on the newest release",
                "Update checks answered `none` (the client runs the newest release of its "
                "channel, or newer) as a share of all: how fast a release is adopted.",
                [
                    Query(
                        f"sum({rate('release_edge_update_checks_total', UP_TO_DATE, window='1h')})"
                        f" / sum({rate('release_edge_update_checks_total', window='1h')})",
                        "on the newest",
                    ),
                    Query(
                        "sum by (protocol) "
                        f"({rate('release_edge_update_checks_total', UP_TO_DATE, window='1h')})"
                        " / sum by (protocol) "
                        f"({rate('release_edge_update_checks_total', window='1h')})",
                        "{{protocol}}",
                    ),
                ],
                unit="percentunit",
            ),
            Panel(
                "Downloads/s by version, platform and arch",
                "Installer and update-archive downloads started (a resumed or segmented "
                "download counts once).",
                [
                    Query(
                        "sum by (channel, version, platform, arch) "
                        f"({rate('release_edge_downloads_total')})",
                        "{{version}} {{platform}}/{{arch}} ({{channel}})",
                    )
                ],
                unit="reqps",
                stacked=True,
            ),
        ],
    ),
    (
        "Release management",
        [
            Panel(
                "Release-manager changes by action",
                "Changes made through the admin API: rollbacks, halts, resumes, rollout "
                "percentages, yanks, policy documents, cache purges. What they left is in "
                "the rollout-state panels.",
                [
                    Query(
                        "sum by (action) "
                        f"(increase({m('release_edge_admin_changes_total')}[$__rate_interval]))",
                        "{{action}}",
                    )
                ],
                stacked=True,
            ),
            Panel(
                "Rollout state: percentage by channel",
                "Share of clients offered each channel's current release (its policy, "
                "policy/{channel}.json; 100 without one), as each instance's cache holds it: "
                "instances agree within cache.manifest_ttl of a change. The others get the "
                "release before it.",
                [
                    Query(
                        "max by (channel) "
                        f"({m('release_edge_channel_rollout_percentage')})",
                        "{{channel}}",
                    )
                ],
                unit="percent",
            ),
            Panel(
                "Rollout state: halted channels",
                "1 (red) for a channel whose current release is offered to nobody new "
                "(halted), 0 otherwise. Resume with POST /admin/channels/{channel}/resume or "
                "`release-edge resume --channel {channel}`.",
                [
                    Query(
                        f"max by (channel) ({m('release_edge_channel_halted')})",
                        "{{channel}}",
                    ),
                ],
                kind="stat",
                thresholds=[(None, "green"), (1, "red")],
            ),
            Panel(
                "CDN purges by outcome",
                "Purges of the CDN's copies after a publish, rollback or policy change. An "
                "`error` leaves the CDN serving old manifests until their max-age runs out.",
                [
                    Query(
                        "sum by (outcome) "
                        f"(increase({m('release_edge_cdn_purges_total')}[$__rate_interval]))",
                        "{{outcome}}",
                    )
                ],
                stacked=True,
            ),
            Panel(
                "Instances by release-edge version",
                "Which build each instance runs.",
                [
                    Query(
                        f"count by (version) ({m('release_edge_build_info')})",
                        "{{version}}",
                    )
                ],
                stacked=True,
            ),
        ],
    ),
]


def build_panel(panel: Panel, panel_id: int):
    if panel.kind == "stat":
        builder = (
            stat.Panel()
            .graph_mode(common.BigValueGraphMode.AREA)
            .color_mode(common.BigValueColorMode.VALUE)
        )
    else:
        builder = (
            timeseries.Panel()
            .fill_opacity(10 if not panel.stacked else 25)
            .legend(
                common_builder.VizLegendOptions()
                .display_mode(common.LegendDisplayMode.LIST)
                .placement(common.LegendPlacement.BOTTOM)
                .show_legend(True)
            )
            .tooltip(
                common_builder.VizTooltipOptions()
                .mode(common.TooltipDisplayMode.MULTI)
                .sort(common.SortOrder.DESCENDING)
            )
        )
        if panel.stacked:
            builder = builder.stacking(
                common_builder.StackingConfig().mode(common.StackingMode.NORMAL)
            )
    builder = (
        builder.id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .height(8)
        .span(panel.width)
    )
    if panel.thresholds:
        builder = builder.thresholds(
            dash.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=v, color=c) for v, c in panel.thresholds])
        )
    for ref, query in zip("ABCDEFGH", panel.queries):
        builder = builder.with_target(
            prometheus.Dataquery()
            .ref_id(ref)
            .datasource(DATASOURCE)
            .expr(query.expr)
            .legend_format(query.legend)
            .range()
        )
    return builder


def label_variable(name: str, label: str, query: str):
    """A multi-value variable over the values of a label, with "All" as `.*`."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .all_value(".*")
        .multi(True)
    )


def build() -> dict:
    board = (
        dash.Dashboard("release-edge")
        .uid("release-edge")
        .description(
            "Update checks, origins, latency, bytes and cost, adoption and release management "
            "of release-edge. Generated by deploy/observability/dashboard.py."
        )
        .tags(["release-edge"])
        .editable()
        .refresh("1m")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(
            dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(label_variable("job", "Job", "label_values(release_edge_build_info, job)"))
        .with_variable(
            label_variable(
                "instance",
                "Instance",
                'label_values(release_edge_build_info{job=~"$job"}, instance)',
            )
        )
    )
    panel_id = 1
    for title, panels in ROWS:
        board = board.with_row(dash.Row(title).id(panel_id))
        panel_id += 1
        for panel in panels:
            board = board.with_panel(build_panel(panel, panel_id))
            panel_id += 1
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render(board: dict) -> str:
    return json.dumps(board, indent=2, sort_keys=True) + "\n"


def queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every query, in panel order."""
    return [
        (panel["title"], target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def fill_variables(expr: str) -> str:
    for name, value in VARIABLE_VALUES.items():
        expr = expr.replace(name, value)
    return expr


def lint(board: dict) -> list[str]:
    """What is wrong with the dashboard, one line each."""
    problems = []
    variables = {v["name"]: v for v in board["templating"]["list"]}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no `datasource` variable of type prometheus")

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource" and value != {"type": "prometheus", "uid": "${datasource}"}:
                    problems.append(f"{where}: data source {value!r} is not the variable")
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")

    walk(board["panels"], "panels")
    for var in board["templating"]["list"]:
        if var["name"] != "datasource":
            walk(var, f"variable {var['name']}")
    for title, expr in queries(board):
        for selector in re.findall(r"\b(release_edge_[a-z_]+)(\{[^}]*\})?", expr):
            name, matchers = selector
            if 'job=~"$job"' not in matchers or 'instance=~"$instance"' not in matchers:
                problems.append(f"{title}: {name} is not restricted to $job and $instance")
        leftover = re.findall(r"\$\w+", fill_variables(expr))
        if leftover:
            problems.append(f"{title}: unknown variables {leftover}")
    return problems


def rules(board: dict) -> str:
    """Every query as a recording rule, so that promtool parses each one."""
    lines = ["groups:", "  - name: dashboard-queries", "    rules:"]
    for i, (title, expr) in enumerate(queries(board)):
        lines.append(f"      # {title}")
        lines.append(f"      - record: dashboard:query_{i}")
        lines.append(f"        expr: {json.dumps(fill_variables(expr))}")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed JSON")
    parser.add_argument("--rules", type=Path, help="write the queries as recording rules here")
    args = parser.parse_args()
    board = build()
    problems = lint(board)
    for problem in problems:
        print(f"dashboard: {problem}", file=sys.stderr)
    if problems:
        return 1
    text = render(board)
    if args.rules:
        args.rules.write_text(rules(board))
    if args.check:
        committed = OUTPUT.read_text() if OUTPUT.exists() else ""
        if committed != text:
            print(
                f"dashboard: {OUTPUT.name} is not what dashboard.py generates; "
                "run `python3 deploy/observability/dashboard.py` and commit the result",
                file=sys.stderr,
            )
            return 1
        print(f"dashboard: {OUTPUT.name} is up to date ({len(queries(board))} queries)")
    elif not args.rules:
        OUTPUT.write_text(text)
        print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
