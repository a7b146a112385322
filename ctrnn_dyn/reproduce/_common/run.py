"""A reproduction's run: its arguments, checked, and what it returns."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

from ctrnn_dyn._checks import check_int

__all__ = ["ReproductionResult", "Timer", "FORWARD_PASSES", "check_run_args", "with_forward"]


class ReproductionResult(NamedTuple):
    """What a reproduction returns (and wrote).

    Attributes:
        name: the reproduction's registry name.
        claims: the numbers behind the figure (JSON-able nested dict).
        checks: each quantitative claim of the reproduction and whether it holds.
        settings: sizes and hyper-parameters used.
        png: path of the written figure (PNG).
        json: path of the written JSON.
        wall_time_s: seconds from the start of ``run`` to the files being written.
        pdf: path of the vector figure.
        npz: path of the data behind the figure, ``None`` if none was written.
    """

    name: str
    claims: dict[str, Any]
    checks: dict[str, bool]
    settings: dict[str, Any]
    png: Path
    json: Path
    wall_time_s: float
    pdf: Path | None = None
    npz: Path | None = None

    @property
    def all_checks_pass(self) -> bool:
        """True when every check holds."""
        return all(self.checks.values())


class Timer:
    """Wall-clock timer started at construction (``elapsed`` in seconds)."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._t0


#: Forward passes a reproduction can train through (see :func:`train_network`).
FORWARD_PASSES = ("nn.RNN", "fast")


def check_run_args(out_dir: Any, quick: Any, seed: Any, forward: Any = None) -> Path:
    """Validate ``run``'s arguments and create ``out_dir``; returns it as a ``Path``.

    Raises:
        TypeError: ``out_dir`` not path-like, ``quick`` not a bool, ``seed`` not an int.
        ValueError: ``seed`` negative, ``forward`` neither ``None`` nor in
            :data:`FORWARD_PASSES`.
    """
    if forward is not None and forward not in FORWARD_PASSES:
        raise ValueError(f"forward must be None or one of {FORWARD_PASSES}, got {forward!r}")
    if not isinstance(out_dir, str | Path):
        raise TypeError(f"out_dir must be a str or pathlib.Path, got {type(out_dir).__name__}")
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {type(quick).__name__}")
    check_int("seed", seed, 0)
    path = Path(out_dir)
    path.mkdir(parents=True, exist_ok=True)
    return path


def with_forward(cfg: dict, forward: str | None) -> dict:
    """``cfg`` with ``cfg["forward"]`` replaced by ``forward`` unless it is ``None`` (a run
    through the other pass than the recorded one; the JSON's settings say which)."""
    return cfg if forward is None else {**cfg, "forward": forward}
