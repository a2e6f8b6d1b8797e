"""The interactive mask explorer: one run's masks level by level, beside a second run's.

``explore(x)`` returns an ipywidgets widget with a run A and a run B picker, a level slider and
a layer dropdown. It shows run A's mask of the layer at the level (a conv layer as C_out × C_in
alive weights per kernel, a linear layer as its kept/pruned grid), run A's density per layer,
the overlap of A and B in the layer and the whole network beside chance
(:func:`maskstudy.analysis.overlap.compare`), and the accuracy of A and B against the weights
remaining with the level marked. Masks are read once per (run, level); a change updates the
artists of one figure in place and renders it into an ``ipywidgets.Image``.
"""

from __future__ import annotations

import html
import io
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave
from matplotlib.ticker import FixedLocator, NullLocator

from maskstudy.analysis.overlap import Overlap, compare
from maskstudy.errors import ConfigError, StoreError
from maskstudy.masks import density, layer_densities
from maskstudy.plots.accuracy import METRIC_LABELS
from maskstudy.plots.structure import count_scale, kernel_counts
from maskstudy.plots.style import WHOLE, apply_style, layer_label, method_line
from maskstudy.runs.discover import open_runs
from maskstudy.runs.runlike import RunLike
from maskstudy.runs.sweep import Sweep
from maskstudy.runs.table import config_columns, flatten, run_name

INSTALL = "pip install 'maskstudy[notebooks]'"
FIGURE_SIZE = (9.0, 2.9)  # inches: mask image, densities, accuracy side by side
DPI = 100
CACHED_MASKS = 256  # (run, level) masks kept in memory: a 24-run sweep of 10 levels fits
CHOSEN, NETWORK, OTHER = "C3", "0.25", "0.65"  # density bars: the chosen layer, 'all', the rest

if TYPE_CHECKING:  # imported on first use by _ipywidgets
    import ipywidgets

Mask = dict[str, torch.Tensor]
Source = str | Path | Sweep | RunLike | Sequence[RunLike]


# --- what to explore --------------------------------------------------------------------------
def _ipywidgets() -> types.ModuleType:
    """ipywidgets, imported on first use: only the explorer needs it, and it is an extra."""
    try:
        import ipywidgets
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"maskstudy.explore needs ipywidgets, which is not installed: {INSTALL}",
            name="ipywidgets",
        ) from error
    return ipywidgets


def _is_run(x: Any) -> bool:
    """Whether ``x`` offers what the explorer reads of a run (masks by level, metrics)."""
    return all(hasattr(x, name) for name in ("config", "levels", "mask", "metrics"))


def runs_of(source: Source) -> list[RunLike]:
    """The runs with a completed level in a sweep or run directory, an opened sweep or run, or
    a list of runs: everything the explorer accepts, checked before any widget is built."""
    if isinstance(source, (str, Path)):
        runs = open_runs(source)
    elif isinstance(source, Sweep):
        runs = source.runs
    elif _is_run(source):
        runs = [source]
    elif isinstance(source, Sequence) and source and all(map(_is_run, source)):
        runs = list(source)
    else:
        raise ConfigError(
            f"explore({type(source).__name__}): pass a sweep or run directory, "
            "maskstudy.open_sweep(...), maskstudy.open_run(...) or a non-empty list of runs"
        )
    done = [run for run in runs if run.levels]
    if not done:
        where = source if isinstance(source, (str, Path, Sweep)) else "the runs given"
        raise StoreError(f"no run in {where} has a completed level yet; nothing to explore")
    return done


# --- what is shown ----------------------------------------------------------------------------
def layer_image(mask: torch.Tensor) -> np.ndarray:
    """One layer's mask as drawn: alive weights per kernel (C_out × C_in, 0..k·k) for a conv
    layer, kept (1) / pruned (0) for a linear one, so that both read as counts."""
    array = mask.numpy()
    return kernel_counts(array) if array.ndim > 2 else np.atleast_2d(array).view(np.uint8)


def full_count(mask: torch.Tensor) -> int:
    """The most an image cell of ``layer_image`` can hold: k·k for a conv layer, 1 otherwise."""
    return int(np.prod(mask.shape[2:]))


@dataclass(frozen=True)
class Shown:
    """What the explorer shows for one choice of runs, level and layer."""

    run_a: str
    run_b: str
    level: int
    layer: str
    image: np.ndarray  # layer_image of run A's mask
    densities: dict[str, float]  # run A's kept fraction per layer and 'all' (whole network)
    layer_overlap: Overlap | None  # A vs B in the layer; None when B lacks the level
    network_overlap: Overlap | None

    @property
    def percent_remaining(self) -> float:
        """Run A's weights kept at the level, in % of its masked weights."""
        return 100 * self.densities[WHOLE]

    def summary(self) -> str:
        """One line: the level, run A's densities and the overlap with run B."""
        text = (
            f"level {self.level} ({self.percent_remaining:.1f} % remaining), "
            f"{layer_label(self.layer)}: density {self.densities[self.layer]:.3f}"
        )
        if self.layer_overlap is None or self.network_overlap is None:
            return f"{text}; run B has no level {self.level}"
        return (
            f"{text}, Jaccard {self.layer_overlap.jaccard:.3f} "
            f"(lift {self.layer_overlap.lift:.2f}); whole network: density "
            f"{self.densities[WHOLE]:.3f}, Jaccard {self.network_overlap.jaccard:.3f} "
            f"(lift {self.network_overlap.lift:.2f})"
        )


def overlap_cells(o: Overlap | None) -> str:
    """Table cells of one overlap row: Jaccard, chance E[J] and the lift over it."""
    if o is None:
        return "<td colspan=3>run B lacks this level</td>"
    return f"<td>{o.jaccard:.3f}</td><td>{o.expected_jaccard:.3f}</td><td>{o.lift:.2f}</td>"


def numbers_html(shown: Shown) -> str:
    """The table under the figure: run A's density and the A/B overlap, layer and network."""
    header = "".join(
        f"<th>{h}</th>" for h in ("", "density A", "Jaccard A, B", "chance E[J]", "lift")
    )
    rows = "".join(
        f"<tr><td>{layer_label(name)}</td><td>{shown.densities[name]:.3f}</td>"
        f"{overlap_cells(o)}</tr>"
        for name, o in ((shown.layer, shown.layer_overlap), (WHOLE, shown.network_overlap))
    )
    return (
        f"level {shown.level}: {shown.percent_remaining:.1f} % of run A's weights remaining"
        f"<br><b>A</b> {html.escape(shown.run_a)} &nbsp; <b>B</b> {html.escape(shown.run_b)}<br>"
        f"<table><tr>{header}</tr>{rows}</table>"
    )


# --- the figure -------------------------------------------------------------------------------
class View:
    """One figure of three panels (mask image, densities, accuracy) whose artists are updated
    in place: a level change sets data, a layer or run change redraws only its panel."""

    def __init__(self) -> None:
        apply_style()
        self.figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
        self.canvas = FigureCanvasAgg(self.figure)
        self.relayout = True  # a panel was rebuilt: lay the figure out at the next render
        self.mask_ax, self.density_ax, self.accuracy_ax = self.figure.subplots(
            1, 3, width_ratios=(1.3, 1, 1.2)
        )
        self.image: Any = None  # the mask's AxesImage and its colorbar
        self.colorbar: Any = None
        self.bars: dict[str, Any] = {}  # layer → its density bar
        self.labels: dict[str, Any] = {}  # layer → the bar's text
        self.markers: list[Any] = []  # run A's and run B's point at the level (empty: none)
        self.curves: tuple[int, int] | None = None  # the runs the accuracy panel shows
        self.full = 0  # the top of the image's scale: k·k alive weights, or 1 kept

    def draw_image(self, image: np.ndarray, full: int, title: str, conv: bool) -> None:
        """Set the mask image's data, rebuilding the panel when its shape or scale changes."""
        if self.image is None or self.image.get_array().shape != image.shape or self.full != full:
            self._new_image(image, full, conv)
        self.image.set_data(image)
        self.mask_ax.set_title(title)

    def _new_image(self, image: np.ndarray, full: int, conv: bool) -> None:
        """A new mask panel: its image on a 0..full scale, axis labels and colorbar."""
        if self.colorbar is not None:
            self.colorbar.remove()
        ax, self.full = self.mask_ax, full
        ax.clear()
        self.relayout = True
        cmap, norm = count_scale(full)
        # sampled before colouring: a layer of millions of weights costs no more to redraw
        self.image = ax.imshow(
            image,
            cmap=cmap,
            norm=norm,
            interpolation="nearest",
            interpolation_stage="data",
            aspect="auto",
        )
        ax.grid(False)
        ax.set(
            xlabel="input channel" if conv else "input",
            ylabel="output channel (filter)" if conv else "unit",
        )
        ticks = sorted({*range(0, full + 1, -(-full // 4)), full})
        self.colorbar = self.figure.colorbar(self.image, ax=ax, ticks=ticks, shrink=0.9)
        self.colorbar.minorticks_off()
        self.colorbar.set_label("alive weights per kernel" if conv else "kept")

    def draw_densities(self, densities: dict[str, float], layer: str) -> None:
        """Run A's kept % per layer and whole network, the chosen layer highlighted."""
        if list(self.bars) != list(densities):
            self._new_bars(list(densities))
        for name, value in densities.items():
            self.bars[name].set_width(100 * value)
            self.bars[name].set_color(
                CHOSEN if name == layer else NETWORK if name == WHOLE else OTHER
            )
            self.labels[name].set_x(100 * value)
            self.labels[name].set_text(f" {100 * value:.3g}")

    def _new_bars(self, names: list[str]) -> None:
        """A new density panel: one empty bar and label per layer name."""
        ax = self.density_ax
        ax.clear()
        self.relayout = True
        y = np.arange(len(names))
        self.bars = dict(zip(names, ax.barh(y, np.zeros(len(names))), strict=True))
        self.labels = {n: ax.text(0, i, "", va="center", fontsize=6) for i, n in enumerate(names)}
        ax.set_yticks(y, [layer_label(n) for n in names])
        ax.invert_yaxis()
        ax.set(xlim=(0, 118), xlabel="weights kept (%)", title="density of run A")

    def draw_curves(self, runs: Sequence[RunLike], frames: Sequence[pd.DataFrame]) -> None:
        """The accuracy of runs A and B against % remaining (log axis, pruning to the right)."""
        ax = self.accuracy_ax
        ax.clear()
        self.relayout = True
        self.markers = []
        ticks: set[float] = set()
        for tag, run, frame, marker in zip("AB", runs, frames, "os", strict=True):
            (point,) = ax.plot([], [], marker, ms=8, mfc="none", mec="black", mew=1.2)
            self.markers.append(point)
            if "test_acc" not in frame:
                continue
            ids = config_columns(run)
            line = method_line(
                ax,
                frame["percent_remaining"],
                100 * frame["test_acc"],
                ids["criterion"],
                ids["regime"],
                marker=marker,
            )
            line.set_label(f"{tag}: {line.get_label()}, s{ids['seed']}")
            ticks |= set(frame["percent_remaining"].round(1))
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.xaxis.set_major_locator(FixedLocator(sorted(ticks)))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:.3g}")
        ax.set(xlabel="weights remaining (%)", ylabel=METRIC_LABELS["test_acc"])
        if ticks:  # a curve was drawn
            ax.legend(fontsize=6, loc="lower left")

    def mark(self, points: Sequence[tuple[float, float] | None]) -> None:
        """Mark run A's (and run B's) point at the chosen level on the accuracy curves."""
        for marker, point in zip(self.markers, points, strict=True):
            x, y = point if point else (np.nan, np.nan)  # nan: nothing drawn
            marker.set_data([x], [y])

    def png(self) -> bytes:
        """The figure as PNG bytes for an ``ipywidgets.Image``: drawn once, and laid out again
        only after a panel was rebuilt (a level change moves data, not axes)."""
        self.figure.set_layout_engine("constrained" if self.relayout else "none")
        self.canvas.draw()
        self.relayout = False
        buffer = io.BytesIO()
        imsave(buffer, np.asarray(self.canvas.buffer_rgba()), format="png")
        return buffer.getvalue()


# --- the explorer -----------------------------------------------------------------------------
def closest(runs: Sequence[RunLike], a: int, candidates: Sequence[int]) -> int:
    """The candidate other than ``a`` whose config differs from run ``a``'s in the fewest
    fields (a seed replicate when there is one); ``a`` itself when there is no other."""
    mine = flatten(runs[a].config.to_dict())

    def differing(i: int) -> int:
        theirs = flatten(runs[i].config.to_dict())
        return sum(value != theirs.get(key) for key, value in mine.items())

    return min((i for i in candidates if i != a), key=differing, default=a)


class Explorer:
    """The state behind the widget: the runs, their cached masks and metrics, the controls
    and the :class:`View`; ``shown`` is what is on screen."""

    def __init__(self, runs: list[RunLike], widgets: types.ModuleType) -> None:
        self.runs = runs
        self.mask: Callable[[int, int], Mask] = lru_cache(CACHED_MASKS)(
            lambda i, level: runs[i].mask(level)
        )
        self.metrics: Callable[[int], pd.DataFrame] = lru_cache(len(runs))(
            lambda i: runs[i].metrics()
        )
        names = [(run_name(run), i) for i, run in enumerate(runs)]
        self.run_a = widgets.Dropdown(options=names, value=0, description="run A")
        self.run_b = widgets.Dropdown(options=names, value=0, description="run B")
        self.level = widgets.SelectionSlider(options=[0], description="level")
        self.layer = widgets.Dropdown(options=[""], description="layer")
        for control in (self.run_a, self.run_b, self.level, self.layer):
            control.layout.width = "45%"
        self.view = View()
        self.picture = widgets.Image(format="png")
        self.numbers = widgets.HTML()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.run_a, self.run_b]),
                widgets.HBox([self.level, self.layer]),
                self.picture,
                self.numbers,
            ]
        )
        self.widget.explorer = self  # how code drives the widget and reads what it shows
        self.shown: Shown | None = None
        self._syncing = False
        self._follow_run_a()
        self.run_a.observe(lambda _: self._follow_run_a(), names="value")
        for control in (self.run_b, self.level, self.layer):
            control.observe(self._changed, names="value")

    def layout(self, i: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Run ``i``'s mask entries and shapes: runs compare only with runs of the same."""
        return tuple((n, tuple(m.shape)) for n, m in self.mask(i, self.runs[i].levels[0]).items())

    def _changed(self, _change: dict[str, Any]) -> None:
        """Show what a moved control asks for, unless run A's options are being set."""
        if not self._syncing:
            self.show()

    def _follow_run_a(self) -> None:
        """Offer what run A has (its levels, its layers, runs B of its architecture), keeping
        run B, the level and the layer where they fit, then show once."""
        a, b, shown = self.run_a.value, self.run_b.value, self.shown
        levels = self.runs[a].levels
        mine = self.layout(a)
        layers = [name for name, _ in mine]
        same = [i for i in range(len(self.runs)) if self.layout(i) == mine]
        self._syncing = True  # changing options moves values: show once, at the end
        try:
            self.run_b.options = [option for option in self.run_a.options if option[1] in same]
            self.run_b.value = b if b in same and b != a else closest(self.runs, a, same)
            self.level.options = levels
            self.level.value = shown.level if shown and shown.level in levels else max(levels)
            self.layer.options = [(layer_label(name), name) for name in layers]
            self.layer.value = shown.layer if shown and shown.layer in layers else layers[0]
        finally:
            self._syncing = False
        self.run_b.disabled = len(same) == 1
        self.show()

    def show(self) -> Shown:
        """Compute what the controls ask for, update the figure and the table, return it."""
        a, b, level, layer = self.run_a.value, self.run_b.value, self.level.value, self.layer.value
        mask_a = self.mask(a, level)
        mask_b = self.mask(b, level) if level in self.runs[b].levels else None
        shown = Shown(
            run_a=run_name(self.runs[a]),
            run_b=run_name(self.runs[b]),
            level=level,
            layer=layer,
            image=layer_image(mask_a[layer]),
            densities={**layer_densities(mask_a), WHOLE: density(mask_a)},
            layer_overlap=None if mask_b is None else compare(mask_a[layer], mask_b[layer]),
            network_overlap=None if mask_b is None else compare(mask_a, mask_b),
        )
        self._draw(shown, mask_a[layer], a, b)
        self.shown = shown
        return shown

    def _draw(self, shown: Shown, chosen: torch.Tensor, a: int, b: int) -> None:
        """Update the figure's artists (the curves only for a new pair of runs) and render it."""
        view, conv = self.view, chosen.dim() > 2
        dead = 100 * float((shown.image == 0).mean())
        what = "kernels dead" if conv else "pruned"
        title = f"A: {layer_label(shown.layer)}, level {shown.level}, {dead:.0f} % {what}"
        view.draw_image(shown.image, full_count(chosen), title, conv)
        view.draw_densities(shown.densities, shown.layer)
        if view.curves != (a, b):
            view.draw_curves([self.runs[a], self.runs[b]], [self.metrics(a), self.metrics(b)])
            view.curves = (a, b)
        view.mark([self.point(a, shown.level), self.point(b, shown.level)])
        self.picture.value = view.png()
        self.numbers.value = numbers_html(shown)

    def point(self, i: int, level: int) -> tuple[float, float] | None:
        """Run ``i``'s (% remaining, test accuracy in %) at ``level``; None when not recorded."""
        frame = self.metrics(i)
        if "test_acc" not in frame or level not in set(frame["level"]):
            return None
        row = frame.loc[frame["level"] == level].iloc[0]
        return float(row["percent_remaining"]), 100 * float(row["test_acc"])


def explore(source: Source) -> ipywidgets.VBox:
    """An ipywidgets widget to browse masks level by level: ``source`` is a sweep or run
    directory, ``maskstudy.open_sweep(...)``, ``maskstudy.open_run(...)`` or a list of runs.

    Pick run A and run B, a level and a layer; the widget shows run A's mask image of the
    layer, its density per layer, the Jaccard of A and B (layer and whole network) beside
    chance, and both accuracy curves with the level marked. ``widget.explorer`` holds the
    controls (``run_a``, ``run_b``, ``level``, ``layer``: set ``.value`` to move them) and
    ``shown``, what is on screen. Needs ipywidgets: ``pip install 'maskstudy[notebooks]'``.
    """
    widgets = _ipywidgets()
    return Explorer(runs_of(source), widgets).widget
