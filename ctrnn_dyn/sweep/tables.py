"""The results table: one row per network, its columns, written atomically as Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _atomic_write_parquet(df, path: Path) -> None:
    """Write ``df`` to ``path`` atomically; the file and its directory are fsynced, and a failed
    write leaves no temporary file (see :func:`ctrnn_dyn._files.atomic_write`)."""
    from ctrnn_dyn import _files

    path.parent.mkdir(parents=True, exist_ok=True)
    _files.atomic_write(path, lambda fh: df.to_parquet(fh, engine="pyarrow", index=False))


def _scalar(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, list | dict) else v


_COLUMNS = ["network", "config_id", "seed", "chunk", "status", "error", "final_loss",
            "best_loss", "eval_loss", "accuracy", "train_accuracy", "n_fixed_points",
            "n_stable_fixed_points", "dynamics_class", "nonfinite_step", "steps",
            "train_time_s", "wall_time_s", "checkpoint", "checkpoint_index"]


def _frame(rows: list[dict]):
    import pandas as pd

    df = pd.DataFrame.from_records(rows)
    for c in _COLUMNS:
        if c not in df:
            df[c] = None
    for c in ("n_fixed_points", "n_stable_fixed_points", "nonfinite_step", "checkpoint_index"):
        df[c] = df[c].astype("Int64")
    for c in ("error", "dynamics_class", "checkpoint"):
        df[c] = df[c].astype("string")
    extra = [c for c in df.columns if c not in _COLUMNS]
    return df[_COLUMNS[:4] + extra + _COLUMNS[4:]]
