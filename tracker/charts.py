"""PNG charts for reports and the weekly email: posts per day with visit markers, engagement per visit.

Built on matplotlib's object API with the Agg canvas (no pyplot, no GUI, no global figure
state), so charts can be drawn from a scheduler thread. Functions return PNG bytes; `write_charts`
saves them. Text from settings is drawn literally (mathtext off: a `$` in a venue stays a `$`).
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, DateFormatter
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from storage.db import Database
from tracker.areas import AREAS
from tracker.settings import Settings
from tracker.summary import Period, posts_per_day, summarise

LABELS: dict[str, dict[str, str]] = {
    "fi": {"posts_per_day": "Julkaisut päivittäin", "posts": "Julkaisuja", "visit": "Vierailupäivä",
           "engagement_per_visit": "Sitoutuminen vierailuittain",
           "engagement": "Sitoutuminen (tykkäykset + jaot + vastaukset + lainaukset)", "no_data": "Ei julkaisuja",
           "date_format": "%d.%m."},
    "sv": {"posts_per_day": "Inlägg per dag", "posts": "Inlägg", "visit": "Besöksdag",
           "engagement_per_visit": "Engagemang per besök",
           "engagement": "Engagemang (gilla + delningar + svar + citat)", "no_data": "Inga inlägg",
           "date_format": "%d.%m."},
    "en": {"posts_per_day": "Posts per day", "posts": "Posts", "visit": "Visit day",
           "engagement_per_visit": "Engagement per visit",
           "engagement": "Engagement (likes + reposts + replies + quotes)", "no_data": "No posts",
           "date_format": "%d %b"},
}
PLATFORM_COLOURS = {"x": "#1d1d1f", "mastodon": "#6364ff", "bluesky": "#1185fe"}
OTHER_COLOURS = ("#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#8ab17d")
VISIT_COLOUR = "#c2185b"
RC = {"text.parse_math": False, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}


def _labels(language: str) -> dict[str, str]:
    return LABELS.get(language, LABELS["en"])


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, metadata={"Software": None})
    return buffer.getvalue()


def _colour(platform: str, n: int) -> str:
    return PLATFORM_COLOURS.get(platform, OTHER_COLOURS[n % len(OTHER_COLOURS)])


def posts_per_day_png(days: Sequence[Mapping[str, Any]], visit_names: Mapping[str, str],
                      language: str = "fi", title: str | None = None) -> bytes:
    """Stacked bars of posts per local day and platform; a dashed line and the area on visit days.

    `days` is `summary.posts_per_day(...)`; `visit_names` maps stop id -> label.
    """
    labels = _labels(language)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(10, 4.2), layout="constrained")
        ax = fig.add_subplot()
        fig.suptitle(title or labels["posts_per_day"], x=0.01, ha="left", fontweight="bold")
        if not days:
            ax.text(0.5, 0.5, labels["no_data"], ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return _png(fig)
        dates = [d["date"] for d in days]
        platforms = sorted({p for d in days for p in d["by_platform"]})
        bottom = [0] * len(days)
        for n, platform in enumerate(platforms):
            counts = [d["by_platform"].get(platform, 0) for d in days]
            ax.bar(dates, counts, bottom=bottom, width=0.85, label=platform, color=_colour(platform, n))
            bottom = [b + c for b, c in zip(bottom, counts)]
        ax.set_ylim(0, (max(bottom) or 1) * 1.08)
        marker = blended_transform_factory(ax.transData, ax.transAxes)
        for d in days:
            for stop_id in d["visits"]:
                ax.axvline(d["date"], color=VISIT_COLOUR, linestyle="--", linewidth=0.9, alpha=0.8)
                ax.text(d["date"], 1.01, visit_names.get(stop_id, stop_id), transform=marker, rotation=90,
                        ha="center", va="bottom", fontsize=7, color=VISIT_COLOUR)
        ax.set_ylabel(labels["posts"])
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        locator = AutoDateLocator(minticks=4, maxticks=12)
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(DateFormatter(labels["date_format"]))
        ax.set_xlim(dates[0] - dt.timedelta(days=1), dates[-1] + dt.timedelta(days=1))
        handles, names = ax.get_legend_handles_labels()
        handles.append(Line2D([], [], color=VISIT_COLOUR, linestyle="--"))
        names.append(labels["visit"])
        fig.legend(handles, names, loc="outside lower left", frameon=False, ncols=len(names), fontsize=8)
        return _png(fig)


def engagement_per_visit_png(visits: Sequence[Mapping[str, Any]], visit_names: Mapping[str, str],
                             language: str = "fi", title: str | None = None) -> bytes:
    """Horizontal bars of engagement per visit in tour order, split by platform, with totals."""
    labels = _labels(language)
    with matplotlib.rc_context(RC):
        height = max(2.5, 0.32 * len(visits) + 1.2)
        fig = Figure(figsize=(10, height), layout="constrained")
        ax = fig.add_subplot()
        fig.suptitle(title or labels["engagement_per_visit"], x=0.01, ha="left", fontweight="bold")
        if not visits:
            ax.text(0.5, 0.5, labels["no_data"], ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return _png(fig)
        names = [visit_names.get(v["stop"], v["stop"]) for v in visits]
        positions = list(range(len(visits)))[::-1]  # first stop on top
        platforms = sorted({p for v in visits for p in v["by_platform"]})
        left = [0] * len(visits)
        for n, platform in enumerate(platforms):
            values = [v["by_platform"].get(platform, {}).get("engagement", 0) for v in visits]
            ax.barh(positions, values, left=left, height=0.7, label=platform, color=_colour(platform, n))
            left = [a + b for a, b in zip(left, values)]
        widest = max(left) or 1
        for y, value in zip(positions, left):
            ax.text(value + widest * 0.01, y, f"{value:,}".replace(",", "\u202f"), va="center", fontsize=7)
        ax.set_xlim(0, widest * 1.12)
        ax.set_yticks(positions, names)
        ax.set_xlabel(labels["engagement"])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if platforms:
            fig.legend(loc="outside lower left", frameon=False, ncols=len(platforms), fontsize=8)
        return _png(fig)


def visit_names(settings: Settings) -> dict[str, str]:
    """Stop id -> area name in the campaign language, with the city when a stop has one."""
    language = settings.campaign.language
    names = {}
    for stop in settings.tour.stops:
        name = AREAS[stop.area].name(language)
        names[stop.id] = f"{name} ({stop.city})" if stop.city and stop.city != name else name
    return names


def campaign_charts(db: Database, settings: Settings, platform: str | None = None,
                    period: Period | None = None) -> dict[str, bytes]:
    """Both charts for the campaign (or a platform / period): {"posts_per_day": png, ...}."""
    names = visit_names(settings)
    language = settings.campaign.language
    return {
        "posts_per_day": posts_per_day_png(posts_per_day(db, settings, platform, period), names, language),
        "engagement_per_visit": engagement_per_visit_png(summarise(db, settings, platform, period).visits,
                                                         names, language),
    }


def write_charts(charts: Mapping[str, bytes], out_dir: str | Path) -> list[Path]:
    """Save each chart as `<name>.png` in `out_dir` (created); returns the paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in charts.items():
        path = folder / f"{name}.png"
        path.write_bytes(png)
        paths.append(path)
    return paths
