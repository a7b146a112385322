"""The package's one figure style: print widths, the Okabe & Ito colours, the rcParams
(:func:`paper_style`, :func:`style`) and saving a figure as a PNG plus a vector PDF."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib as mpl
from matplotlib.figure import Figure

from ctrnn_dyn._checks import check_int

__all__ = [
    "COLUMN_WIDTH",
    "PAGE_WIDTH",
    "SAVE_DPI",
    "OKABE_ITO",
    "paper_style",
    "style",
    "save_figure",
]


#: Print width (inches) of a journal's single column.
COLUMN_WIDTH = 3.5
#: Print width (inches) of a full journal page (two columns).
PAGE_WIDTH = 7.2
#: Resolution of saved PNGs (dots per inch at print size).
SAVE_DPI = 300

#: Okabe–Ito colour-blind-safe palette.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
}
_CYCLE = [OKABE_ITO[c] for c in ("blue", "orange", "bluish green", "vermillion",
                                  "reddish purple", "sky blue", "black", "yellow")]


def paper_style() -> dict[str, Any]:
    """rcParams of the package's figure style.

    7-pt DejaVu Sans text (titles 7.5 pt, legends and ticks 6.5 pt), mathtext in DejaVu Sans,
    0.6-pt axes, no top/right spines, no legend frames, the Okabe–Ito colour cycle, ``viridis``
    for continuous variables, :data:`SAVE_DPI` for saved PNGs, TrueType fonts in PDFs.
    """
    from cycler import cycler

    return {
        "figure.figsize": (COLUMN_WIDTH, 2.6),
        "figure.dpi": 100,
        "figure.facecolor": "white",
        "savefig.dpi": SAVE_DPI,
        "savefig.facecolor": "white",
        "font.family": "DejaVu Sans",
        "mathtext.fontset": "dejavusans",
        "font.size": 7.0,
        "axes.labelsize": 7.0,
        "axes.titlesize": 7.5,
        "figure.titlesize": 8.5,
        "legend.fontsize": 6.5,
        "xtick.labelsize": 6.5,
        "ytick.labelsize": 6.5,
        "axes.titlepad": 4.0,
        "axes.titlelocation": "left",
        "axes.labelpad": 2.5,
        "axes.linewidth": 0.6,
        "xtick.major.width": 0.6,
        "ytick.major.width": 0.6,
        "xtick.minor.width": 0.4,
        "ytick.minor.width": 0.4,
        "xtick.major.size": 2.5,
        "ytick.major.size": 2.5,
        "xtick.minor.size": 1.5,
        "ytick.minor.size": 1.5,
        "lines.linewidth": 1.0,
        "lines.markersize": 4.0,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "legend.handlelength": 1.6,
        "legend.borderaxespad": 0.3,
        "axes.prop_cycle": cycler(color=_CYCLE),
        "image.cmap": "viridis",
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
    }


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Context manager: the package's figure style (:func:`paper_style`) for what is drawn
    inside it (``with plot.style(): fig = ...``)."""
    with mpl.rc_context(paper_style()):
        yield


def _styled(fn: Callable) -> Callable:
    """Run a plot function inside :func:`style`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with style():
            return fn(*args, **kwargs)

    return wrapper


def save_figure(fig: Figure, path: str | Path, *, dpi: int = SAVE_DPI) -> tuple[Path, Path]:
    """Write ``fig`` as ``PATH.png`` (``dpi`` dots per inch, at least 200) and ``PATH.pdf``
    (vector); ``path``'s suffix, if any, is replaced.

    Returns:
        ``(png, pdf)`` paths.

    Raises:
        TypeError: ``dpi`` not an int.
        ValueError: ``dpi < 200``.
    """
    dpi = check_int("dpi", dpi, 200)
    stem = Path(path).with_suffix("")
    png, pdf = stem.with_suffix(".png"), stem.with_suffix(".pdf")
    meta_png = {"Software": None}
    meta_pdf = {"Creator": None, "Producer": None, "CreationDate": None}
    fig.savefig(png, dpi=int(dpi), metadata=meta_png)
    fig.savefig(pdf, metadata=meta_pdf)
    return png, pdf
