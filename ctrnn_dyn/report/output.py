"""An analysis report written to disk: its figure, its numbers (JSON) and every fixed point
(NPZ)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ctrnn_dyn.report.analysis import AnalysisReport

__all__ = ["REPORT_FILES", "write_report"]

logger = logging.getLogger(__name__)


#: Names of the files :func:`write_report` writes: figure, numbers, fixed points.
REPORT_FILES = {"figure": "analysis.png", "json": "analysis.json", "npz": "fixed_points.npz"}


def _figure(report: AnalysisReport) -> Any:
    from ctrnn_dyn import plot
    from ctrnn_dyn.pca import TrajectoryPCA
    from ctrnn_dyn.reproduce._common import new_figure

    fig = new_figure(15.0, 7.5)
    grid = fig.add_gridspec(2, 3, width_ratios=[1.5, 1.0, 1.1])
    ax3 = fig.add_subplot(grid[:, 0], projection="3d")
    fixed = report.fixed_points.fixed
    d = report.states.shape[-1]
    pca = TrajectoryPCA(3).fit(report.states) if d > 3 else None
    plot.fixed_points_3d(fixed, pca=pca, trajectories=report.states[:8], ax=ax3)
    ax3.set_title(f"{len(fixed)} fixed points and 8 trajectories"
                  + (" in 3-D PCA space" if pca is not None else ""))
    ax_mu = fig.add_subplot(grid[0, 1])
    ax_lam = fig.add_subplot(grid[1, 1])
    th = np.linspace(0, 2 * np.pi, 400)
    ax_mu.plot(np.cos(th), np.sin(th), color="0.5", lw=0.8, zorder=1)
    ax_mu.set_aspect("equal", adjustable="datalim")
    ax_lam.axvline(0.0, color="0.5", lw=0.8, zorder=1)
    seen: set[str] = set()
    for a in report.per_input:
        fx = np.flatnonzero(a.fixed_points.converged)
        for i in fx:
            cls = str(a.fixed_points.stability[i])
            style = plot.STABILITY_STYLE.get(cls, plot.STABILITY_STYLE["fixed point"])
            label = None if cls in seen else cls
            seen.add(cls)
            mu = a.fixed_points.eigvals[i]
            ax_mu.scatter(mu.real, mu.imag, s=10, color=style["color"], label=label, zorder=3,
                          linewidths=0)
            if a.continuous_eigvals is not None:
                lam = a.continuous_eigvals[i]
                ax_lam.scatter(lam.real, lam.imag, s=10, color=style["color"], zorder=3,
                               linewidths=0)
    ax_mu.set_xlabel(r"Re $\mu$")
    ax_mu.set_ylabel(r"Im $\mu$")
    ax_mu.set_title(r"map multipliers $\mu$ (stable: $|\mu| < 1$)")
    if seen:
        ax_mu.legend(fontsize="small", frameon=False, loc="upper left",
                     bbox_to_anchor=(1.02, 1.0))
    unit = report.numbers["settings"]["time_unit"]
    ax_lam.set_xlabel(r"Re $\lambda$" + (r" ($1/\tau$)" if unit == "tau" else ""))
    ax_lam.set_ylabel(r"Im $\lambda$")
    ax_lam.set_title(r"eigenvalues $\lambda$ of $(J - I)/\alpha$ (stable: Re $\lambda < 0$)")
    ax_txt = fig.add_subplot(grid[:, 2])
    ax_txt.axis("off")
    verdict = report.numbers["verdict"]
    text = [f"verdict: {verdict['label']}", ""]
    for n in report.numbers["inputs"]:
        text.append("u = (" + ", ".join(f"{v:g}" for v in n["u"]) + ")")
        text.append(f"  {n['n_fixed']} fixed points, {n['n_slow']} slow points")
        for cls, c in n["stability_counts"].items():
            text.append(f"    {cls}: {c}")
        for k, c in n["n_unstable_counts"].items():
            text.append(f"    {k} unstable mode{'s' if k != '1' else ''}: {c}")
        for lab, c in n["dynamics"]["labels"].items():
            text.append(f"  dynamics: {lab} from {c} of {n['dynamics']['n_starts']} starts")
        text.append("")
    ax_txt.text(0.0, 1.0, "\n".join(text[:60]), va="top", ha="left", family="monospace",
                fontsize=8, transform=ax_txt.transAxes)
    run = report.run
    fig.suptitle(f"{type(run.task).__name__} CT-RNN after {run.step} steps ({run.path.parent})")
    return fig


def write_report(report: AnalysisReport, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``analysis.png``, ``analysis.json`` and ``fixed_points.npz`` into ``out_dir``.

    Args:
        report: the result of :func:`analyze_run`.
        out_dir: directory (created if missing).

    Returns:
        ``{"figure": path, "json": path, "npz": path}`` (:data:`REPORT_FILES`).

    Raises:
        TypeError: ``report`` is not an :class:`AnalysisReport`.
        ValueError: ``out_dir`` exists and is not a directory.
    """
    if not isinstance(report, AnalysisReport):
        raise TypeError(f"report must be an AnalysisReport, got {type(report).__name__}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / name for k, name in REPORT_FILES.items()}
    report.fixed_points.save(paths["npz"])
    fig = _figure(report)
    fig.savefig(paths["figure"], dpi=110)
    from ctrnn_dyn.reproduce._common import software_versions

    payload = {**report.numbers, "files": {k: p.name for k, p in paths.items()},
               "versions": software_versions()}
    tmp = paths["json"].with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(paths["json"])
    logger.info("analyze: wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths
