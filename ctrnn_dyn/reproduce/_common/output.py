"""A reproduction's figure and JSON: the figure at print size, numbers made JSON-able, the
software versions, and the files written once (PNG, PDF, JSON and the data)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ctrnn_dyn.reproduce._common.data import save_data
from ctrnn_dyn.reproduce._common.run import ReproductionResult, Timer

__all__ = ["software_versions", "jsonable", "new_figure", "write_reproduction"]

logger = logging.getLogger(__name__)


_PACKAGES = ("ctrnn_dyn", "jax", "jaxlib", "flax", "optax", "jaxopt", "numpy", "scipy",
             "scikit-learn", "matplotlib")


def software_versions() -> dict[str, str]:
    """Versions of Python, the platform and the scientific stack (``"missing"`` if absent)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    try:
        import jax

        out["jax_backend"] = jax.default_backend()
    except Exception:  # pragma: no cover - jax is a hard dependency
        out["jax_backend"] = "unknown"
    return out


def jsonable(value: Any) -> Any:
    """Recursively turn NumPy/JAX scalars and arrays, tuples, paths and dataclasses into JSON
    types. Complex numbers become ``[re, im]``; non-finite floats become ``None``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, str | bool) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "__array__") and not isinstance(value, np.generic):
        return jsonable(np.asarray(value).tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, complex | np.complexfloating):
        return [jsonable(float(value.real)), jsonable(float(value.imag))]
    if isinstance(value, float | np.floating):
        f = float(value)
        return f if math.isfinite(f) else None
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")


def new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure (no global state, no GUI backend) with constrained layout.

    ``width`` and ``height`` are the print size in inches: at most
    :data:`~ctrnn_dyn.plot.PAGE_WIDTH` wide for a figure across a journal page (a wider one
    is shrunk when printed, and its 7-pt text with it; this is logged). Create it inside
    ``with plot.style():`` so that its text takes the package's style.
    """
    from ctrnn_dyn.plot import PAGE_WIDTH

    if width > PAGE_WIDTH + 1e-9:
        logger.info("figure %.1f in wide: wider than a journal page (%.1f in), its text "
                    "will print smaller than the style's 7 pt", width, PAGE_WIDTH)
    return Figure(figsize=(width, height), layout="constrained")


def write_reproduction(
    out_dir: Path,
    name: str,
    fig: Figure,
    *,
    claims: dict[str, Any],
    checks: Mapping[str, Any],
    settings: dict[str, Any],
    quick: bool,
    seed: int,
    timer: Timer,
    data: Mapping[str, Any] | None = None,
) -> ReproductionResult:
    """Write ``out_dir/name.png`` (300 dpi), ``name.pdf``, ``name.json`` and, when ``data`` is
    given, ``name.npz`` (``save_data(path, **data)``); returns the result.

    ``checks`` maps each claim's name to whether it holds, either a bool or a mapping
    ``{"pass": bool, "value": ..., "criterion": str}`` with the number(s) that decide it and the
    rule applied; the JSON's ``"checks"`` holds the bools and ``"claim_results"`` one entry per
    claim (``claim``, ``criterion``, ``value``, ``pass``).

    The JSON and the data are written through a temporary file and renamed, so a killed run
    never leaves a half-written file.
    """
    from ctrnn_dyn.plot import save_figure

    png, pdf = save_figure(fig, out_dir / f"{name}.png")
    npz = None if data is None else save_data(out_dir / f"{name}.npz", **data)
    table = []
    for k, v in checks.items():
        entry = dict(v) if isinstance(v, Mapping) else {"pass": v}
        if "pass" not in entry:
            raise ValueError(f"checks[{k!r}] must be a bool or a mapping with a 'pass' key")
        ok = bool(entry.pop("pass"))
        table.append({"claim": k, **entry, "pass": ok})
    checks = {row["claim"]: row["pass"] for row in table}
    wall = timer.elapsed
    payload = {
        "name": name,
        "quick": quick,
        "seed": int(seed),
        "claims": jsonable(claims),
        "checks": checks,
        "all_checks_pass": all(checks.values()),
        "claim_results": jsonable(table),
        "settings": jsonable(settings),
        "versions": software_versions(),
        "wall_time_s": round(wall, 2),
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    failed = [k for k, v in checks.items() if not v]
    if failed:
        logger.warning("%s: checks failed: %s", name, ", ".join(failed))
    logger.info("%s: wrote %s, %s, %s%s in %.1f s", name, png, pdf, path,
                "" if npz is None else f" and {npz}", wall)
    return ReproductionResult(name, payload["claims"], checks, payload["settings"], png, path,
                              wall, pdf, npz)
