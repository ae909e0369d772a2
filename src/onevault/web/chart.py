"""The dashboard's line chart: SVG drawn server-side by pygal from the numbers a client sends.

The SVG carries no script (pygal's tooltips would load pygal.js from its CDN, and it always writes
an inline config script) and no reference to any other file: its style sheet is inline, so the page
can insert it as it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any

import pygal
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pygal.style import Style

MAX_SERIES = 4
MAX_POINTS = 1000
MAX_LABEL = 64
# Large enough for any count the stats API returns; bounded so the axis arithmetic stays finite.
MAX_VALUE = 1e15
# Values below this are drawn as 0: no chart tells them from 0 (any figure of the stats API is 0
# or above it), and the axis arithmetic of tinier ones leaves floating point.
MIN_VALUE = 1e-6
# Blue, orange, green, purple: told apart with the common colour-vision deficiencies, and each at
# least 4.5:1 against the white background (WCAG asks 3:1 of graphics).
SERIES_COLOURS = ("#1d4ed8", "#b45309", "#047857", "#7e22ce")
FONTS = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1f2937",
    foreground_strong="#111827",
    foreground_subtle="#4b5563",
    font_family=FONTS,
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=14,
    title_font_size=16,
    opacity="1",
    opacity_hover="1",
    stroke_opacity="1",
    stroke_opacity_hover="1",
    stroke_width="2",
    stroke_width_hover="3",
    guide_stroke_color="#9ca3af",
    major_guide_stroke_color="#6b7280",
    transition="0ms",
    colors=SERIES_COLOURS,
)
# Dots beyond this many points would merge into a thick line.
MAX_DOTS = 62
# Room for one x-axis label (in SVG units, the chart's own pixels).
X_LABEL_ROOM = 100

# Printable text only: XML 1.0 cannot carry most control characters.
Text = Annotated[str, StringConstraints(max_length=MAX_LABEL, pattern=r"^[^\x00-\x1f\x7f]*$")]
# Strict: a number, never a numeric string or a boolean.
Value = Annotated[float, Field(ge=0, le=MAX_VALUE, allow_inf_nan=False, strict=True)]


class ChartSeries(BaseModel):
    """One line: its name in the legend and a value per label (fewer values end the line early)."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[Text, StringConstraints(min_length=1)] = Field(examples=["Visitors"])
    values: list[Value] = Field(max_length=MAX_POINTS, examples=[[3, 5, 2]])


class ChartRequest(BaseModel):
    """The numbers to draw: labels along the x axis and up to four series of non-negative values."""

    model_config = ConfigDict(extra="forbid")

    labels: list[Text] = Field(max_length=MAX_POINTS, examples=[["Mon 1", "Tue 2", "Wed 3"]])
    series: list[ChartSeries] = Field(min_length=1, max_length=MAX_SERIES)
    title: Text = Field(default="Visitors and page views", description="The chart's accessible name")
    width: int = Field(
        default=800,
        ge=300,
        le=1600,
        description="Width in pixels the chart is drawn for (text keeps its size: a phone asks for less)",
    )
    height: int = Field(default=320, ge=200, le=800)


def y_ticks(top: float, whole: bool) -> list[float]:
    """Five or so evenly spaced round values from 0 to at least `top`; whole numbers for counts."""
    if top <= 0:
        return [0, 1]
    rough = top / 5
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= rough)
    if whole:
        step = max(1, round(step))
    return [round(i * step, 12) for i in range(math.ceil(top / step - 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:,.12g}"


def _image_without_script(title: str) -> Callable[[Any], Any]:
    """A pygal XML filter: drop scripts and comments, and name the SVG as one image.

    The title is the SVG's `<title>` only: the page shows its own heading above the chart.
    """

    def xml_filter(root: Any) -> Any:
        for child in root:
            if child.tag == "title":
                child.text = title
        for parent in list(root.iter()):
            for child in list(parent):
                # Comments and processing instructions have a function as their tag.
                if callable(child.tag) or child.tag == "script":
                    parent.remove(child)
        # The title names the image; the shapes inside say nothing more to a screen reader, and
        # the page repeats the numbers in a table.
        root.set("role", "img")
        root.set("aria-label", title)
        return root

    return xml_filter


def render(chart: ChartRequest) -> str:
    """The chart as an SVG document (no XML declaration), its title its accessible name."""
    drawn = [[v if v >= MIN_VALUE else 0.0 for v in s.values] for s in chart.series]
    values = [v for series in drawn for v in series]
    line = pygal.Line(
        style=STYLE,
        js=[],
        disable_xml_declaration=True,
        width=chart.width,
        height=chart.height,
        legend_at_bottom=True,
        legend_at_bottom_columns=len(chart.series),
        show_dots=max((len(series) for series in drawn), default=0) <= MAX_DOTS,
        dots_size=3,
        show_minor_x_labels=False,
        x_labels_major_count=max(2, chart.width // X_LABEL_ROOM),
        truncate_label=-1,
        y_labels=y_ticks(max(values, default=0), all(float(v).is_integer() for v in values)),
        value_formatter=_number,
        include_x_axis=True,
        margin=16,
    )
    line.x_labels = chart.labels
    for series, points in zip(chart.series, drawn, strict=True):
        line.add(series.name, points)
    line.add_xml_filter(_image_without_script(chart.title))
    svg: str = line.render(is_unicode=True)
    return svg
