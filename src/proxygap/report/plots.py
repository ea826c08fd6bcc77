"""Plot helpers shared by the reports (matplotlib, Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402


def save_figure(fig, path, dpi: int = 110) -> None:
    """``fig.savefig`` through a temporary sibling and a rename: a full disk leaves the old plot, not a truncated one."""
    from proxygap.fileio import atomic_file

    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi)


def mean_of(x) -> float:
    """An interval's mean (or a plain number); nan where undefined."""
    if isinstance(x, dict):
        x = x.get("mean")
    return np.nan if x is None else float(x)


def error_bar(iv: dict) -> tuple[float, float, float]:
    """(mean, distance down to lo, distance up to hi) of an interval, for matplotlib's yerr/xerr."""
    m, lo, hi = mean_of(iv), mean_of(iv.get("lo")), mean_of(iv.get("hi"))
    return m, (m - lo) if np.isfinite(lo) else 0.0, (hi - m) if np.isfinite(hi) else 0.0


def iv_text(iv: dict | None) -> str:
    """'mean [lo, hi]' with two decimals ('mean' alone without spread, '-' if undefined)."""
    if not iv:
        return "-"
    m, lo, hi = mean_of(iv), mean_of(iv.get("lo")), mean_of(iv.get("hi"))
    if not np.isfinite(m):
        return "-"
    return f"{m:.2f} [{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) and hi != lo else f"{m:.2f}"


def marked_heatmap(ax, values: np.ndarray, rows: Sequence[str], cols: Sequence[str], marked: np.ndarray,
                   texts: Sequence[Sequence[str]] | None = None, cmap: str = "RdBu_r",
                   norm: Normalize | None = None, colorbar_label: str = "", fontsize: float = 8):
    """A rows x cols heatmap of ``values`` (nan: hatched grey, 'n/a'). Cells where ``marked`` is
    true get a thick black border and bold text: the cells whose claim the intervals support.
    Without ``norm`` the colour scale is symmetric around 0. Returns the image."""
    values = np.asarray(values, dtype=float)
    marked = np.asarray(marked, dtype=bool)
    if norm is None:
        finite = np.abs(values[np.isfinite(values)])
        lim = max(1e-6, float(finite.max())) if finite.size else 1.0
        norm = Normalize(-lim, lim)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=norm, aspect="auto")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isfinite(values[i, j]):
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, facecolor="#eeeeee", hatch="//",
                                           edgecolor="#bbbbbb", lw=0))
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=fontsize, color="#777777")
                continue
            text = texts[i][j] if texts is not None else f"{values[i, j]:+.2f}"
            dark = abs(float(norm(values[i, j])) - 0.5) > 0.35  # near either end of a diverging map
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color="white" if dark else "black",
                    fontweight="bold" if marked[i, j] else "normal")
            if marked[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.46, i - 0.46), 0.92, 0.92, fill=False, lw=2.2,
                                           color="white" if dark else "black"))
    ax.set_xticks(range(len(cols)), list(cols), rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), list(rows))
    ax.figure.colorbar(im, ax=ax, label=colorbar_label)
    return im
