"""bench/onsale.py's output: the arms as tables, the on/off ratios, the latency chart and
the machine it ran on."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ROOT, log

TABLE_ROWS: dict[str, list[tuple[str, str]]] = {
    "hot": [
        ("201 (winners)", "winners"),
        ("409", "statuses.409"),
        ("p50 ms", "latency_ms.p50"),
        ("p95 ms", "latency_ms.p95"),
        ("p99 ms", "latency_ms.p99"),
        ("max ms", "latency_ms.max"),
        ("whole burst ms", "burst_ms"),
        ("PG transactions", "pg_transactions"),
        ("API CPU s", "api_cpu_s"),
        ("API CPU ms/request", "api_cpu_ms_per_request"),
        ("double-booked seats", "check.double_booked_seats"),
    ],
    "onsale": [
        ("requests/s", "requests_per_s"),
        ("bookings/s", "bookings_per_s"),
        ("seats/s", "seats_per_s"),
        ("requests", "requests"),
        ("conflicts (409)", "conflicts"),
        ("sold out", "sold_out"),
        ("duration s", "duration_s"),
        ("p50 ms", "latency_ms.p50"),
        ("p95 ms", "latency_ms.p95"),
        ("p99 ms", "latency_ms.p99"),
        ("max ms", "latency_ms.max"),
        ("p99 ms of 201s", "latency_ms_by_status.201.p99"),
        ("p99 ms of 409s", "latency_ms_by_status.409.p99"),
        ("API CPU ms/request", "api_cpu_ms_per_request"),
        ("PG CPU ms/request", "pg_cpu_ms_per_request"),
        ("double-booked seats", "check.double_booked_seats"),
    ],
    "browse": [
        ("requests/s", "requests_per_s"),
        ("p50 ms", "latency_ms.p50"),
        ("p99 ms", "latency_ms.p99"),
        ("max ms", "latency_ms.max"),
    ],
    "ga": [
        ("tickets/s", "tickets_per_s"),
        ("tickets", "tickets"),
        ("bookings (201)", "bookings"),
        ("409 during the sale", "statuses.409"),
        ("duration s", "duration_s"),
        ("p50 ms", "latency_ms.p50"),
        ("p99 ms", "latency_ms.p99"),
        ("PG transactions, sale", "pg_transactions_sale"),
        ("PG xacts per loser, sale", "pg_transactions_per_loser_sale"),
        ("losers' burst requests", "burst_requests"),
        ("PG transactions, burst", "pg_transactions_burst"),
        ("PG xacts per loser, burst", "pg_transactions_per_loser_burst"),
        ("burst p99 ms", "burst_latency_ms.p99"),
        ("double-booked places", "check.double_booked_seats"),
    ],
}


TABLE_ROWS["uncontended"] = TABLE_ROWS["onsale"]
TABLE_ROWS["logins"] = [
    ("logins", "logins"),
    ("login p50 ms", "login_latency_ms.p50"),
    ("login p99 ms", "login_latency_ms.p99"),
    ("booking p99 of 201s, quiet", "bookings_p99_201_quiet_ms"),
    ("booking p99 of 201s, burst", "bookings_p99_201_burst_ms"),
    ("burst / quiet (p99 201s)", "burst_over_quiet_p99"),
    ("booking p99 all, quiet", "bookings_p99_all_quiet_ms"),
    ("booking p99 all, burst", "bookings_p99_all_burst_ms"),
    ("API peak RSS MB, burst", "api_peak_rss_during_burst_mb"),
    ("double-booked seats", "check.double_booked_seats"),
]
OPENLOOP_ROWS = [
    ("p50 ms", "latency_ms.p50"),
    ("p99 ms", "latency_ms.p99"),
    ("p99 ms of 201s", "latency_ms_by_status.201.p99"),
    ("p99 ms of 409s", "latency_ms_by_status.409.p99"),
    ("201s", "statuses.201"),
    ("answered/s", "answered_per_s"),
    ("send lag p99 ms", "send_lag_ms.p99"),
]


def _openloop_rows(picked: list[Any]) -> list[tuple[str, str]]:
    """One block of rows per rate, then the answer: the highest rate within p99 <= 100 ms."""
    rates: list[str] = []
    for summary in picked:
        for rate in (summary or {}).get("rates", {}):
            if rate not in rates:
                rates.append(rate)
    rows = [
        (f"{rate}/s {text}", f"rates.{rate}.{path}")
        for rate in rates
        for text, path in OPENLOOP_ROWS
    ]
    return [
        *rows,
        ("max rate, p99 <= 100 ms", "max_rate_p99_within_100ms"),
        ("double-booked seats", "check.double_booked_seats"),
    ]


def dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def tables(arms: list[dict[str, Any]]) -> str:
    labels = [a["label"] for a in arms]
    names: list[str] = []
    for a in arms:
        for name, summary in a["scenarios"].items():
            if name not in names:
                names.append(name)
            if "browse" in summary and f"{name}+browse" not in names:
                names.append(f"{name}+browse")
    out = []
    for name in names:
        base, _, sub = name.partition("+")
        picked = [
            (a["scenarios"].get(base, {}).get("browse") if sub else a["scenarios"].get(base))
            for a in arms
        ]
        if base == "openloop":
            rows = _openloop_rows(picked)
        else:
            rows = TABLE_ROWS["browse" if sub or base == "browse" else base.rstrip("4")]
        title = f"browse during {base}" if sub else name
        header = ["", *labels] + (["ratio " + "/".join(labels[:2])] if len(labels) >= 2 else [])
        lines = [header]
        for text, path in rows:
            values = [dig(p, path) if p else None for p in picked]
            cells = [text, *["-" if v is None else str(v) for v in values]]
            if len(values) >= 2:
                cells.append(_ratio(values[0], values[1]))
            lines.append(cells)
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        out.append(f"== {title} ==")
        out.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in lines)
        out.append("")
    return "\n".join(out)


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, bool) or isinstance(b, bool):
        return "-"
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return f"{a / b:.2f}x"
    return "-"


def ratios(by_label: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean of each headline figure per arm label, then first label / second label."""
    labels = list(by_label)
    if len(labels) < 2:
        return {}
    headline = {
        "hot": ["latency_ms.p99", "pg_transactions", "api_cpu_s"],
        "onsale": [
            "requests_per_s",
            "bookings_per_s",
            "latency_ms.p99",
            "api_cpu_ms_per_request",
            "pg_cpu_ms_per_request",
        ],
        "onsale4": ["requests_per_s", "bookings_per_s", "latency_ms.p99", "pg_cpu_ms_per_request"],
        "browse": ["requests_per_s", "latency_ms.p99"],
        "uncontended": ["bookings_per_s", "latency_ms.p99", "api_cpu_ms_per_request"],
        "openloop": ["max_rate_p99_within_100ms"],
        "ga": ["tickets_per_s", "latency_ms.p99", "pg_transactions_per_loser_burst"],
    }
    out: dict[str, Any] = {}
    for scenario, paths in headline.items():
        for path in paths:
            means = []
            for label in labels[:2]:
                values = [
                    v
                    for arm in by_label[label]
                    if isinstance(v := dig(arm["scenarios"].get(scenario), path), int | float)
                ]
                means.append(sum(values) / len(values) if values else None)
            if None not in means and means[1]:
                out[f"{scenario}.{path}"] = {
                    labels[0]: round(means[0], 3),
                    labels[1]: round(means[1], 3),
                    "ratio": round(means[0] / means[1], 3),
                }
    return out


CDF_PANELS = [
    ("hot", "hot seat: latency CDF"),
    ("onsale", "onsale, 1 seat: latency CDF"),
    ("onsale4", "onsale, 1-4 seats: latency CDF"),
    ("browse", "seat map reads (500 seats): latency CDF"),
]
THROUGHPUT_BARS = [
    ("onsale req/s", "onsale", "requests_per_s"),
    ("onsale bookings/s", "onsale", "bookings_per_s"),
    ("onsale4 req/s", "onsale4", "requests_per_s"),
    ("browse req/s", "browse", "requests_per_s"),
]
Style = Callable[[dict[str, Any]], dict[str, Any]]


def _arm_style(arms: list[dict[str, Any]]) -> Style:
    """One colour per label; with several rounds, the even rounds dashed."""
    labels = list(dict.fromkeys(a["label"] for a in arms))
    rounds = max((a.get("round", 1) for a in arms), default=1)

    def style(arm: dict[str, Any]) -> dict[str, Any]:
        name = arm["label"] + (f" #{arm.get('round', 1)}" if rounds > 1 else "")
        dashes = "-" if arm.get("round", 1) % 2 else "--"
        return {"label": name, "color": f"C{labels.index(arm['label'])}", "linestyle": dashes}

    return style


def _cdf_axis(ax: Any, title: str) -> None:
    ax.set_title(title)
    ax.set_xscale("log")
    ax.set_xlabel("latency ms (log)")
    ax.axvline(150, color="grey", linestyle=":", linewidth=1)
    ax.legend(fontsize=7)


def _plot_cdf(ax: Any, cdf: list[float], style: dict[str, Any]) -> None:
    ax.plot(cdf, [100 * (i + 1) / len(cdf) for i in range(len(cdf))], **style)


def _cdf_panels(flat: Any, arms: list[dict[str, Any]], style: Style) -> None:
    for ax, (name, title) in zip(flat, CDF_PANELS, strict=False):
        for arm in arms:
            summary = arm["scenarios"].get(name)
            if not summary or not summary.get("cdf_ms"):
                continue
            _plot_cdf(ax, summary["cdf_ms"], style(arm))
            if name == "onsale4" and "browse" in summary:
                _plot_cdf(flat[4], summary["browse"]["cdf_ms"], style(arm))
        _cdf_axis(ax, title)
        ax.set_ylabel("% of requests")
    _cdf_axis(flat[4], "seat map reads during onsale 1-4: latency CDF")


def _throughput_panel(ax: Any, arms: list[dict[str, Any]], style: Style) -> None:
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        values = [dig(arm["scenarios"].get(s), p) or 0 for _, s, p in THROUGHPUT_BARS]
        bar = style(arm)
        ax.bar(
            [m + i * width for m in range(len(THROUGHPUT_BARS))],
            values,
            width,
            label=bar["label"],
            color=bar["color"],
            alpha=1.0 if arm.get("round", 1) % 2 else 0.6,
        )
    ax.set_xticks([m + width * (len(arms) - 1) / 2 for m in range(len(THROUGHPUT_BARS))])
    ax.set_xticklabels([m[0] for m in THROUGHPUT_BARS], rotation=15, fontsize=8)
    ax.set_title("throughput")
    ax.legend(fontsize=7)


def chart(arms: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'); no chart")
        return False
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    flat = axes.flatten()
    style = _arm_style(arms)
    _cdf_panels(flat, arms, style)
    _throughput_panel(flat[5], arms, style)
    fig.suptitle("CinemaCore onsale benchmark")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
    }
