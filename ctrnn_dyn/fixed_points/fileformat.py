"""The file format of :class:`~ctrnn_dyn.fixed_points.FixedPoints`: its fields, and every field
checked from the ``.npy`` headers (shape, dtype, size against the bytes held) and then by value,
before any data is used; nothing is unpickled."""

from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from ctrnn_dyn import linear

_FORMAT_VERSION = 1


_ARRAY_FIELDS = (
    "x",
    "u",
    "q",
    "converged",
    "n_iters",
    "x_init",
    "jacobians",
    "eigvals",
    "eigvecs",
    "left_eigvecs",
    "n_unstable",
    "n_starts",
    "stop_reason",
)
_REQUIRED = ("x", "u", "q", "converged", "n_iters", "x_init")

#: Why a start stopped (``FixedPoints.stop_reason`` holds an index into this tuple).
STOP_REASONS = ("converged", "slow point", "iteration cap", "non-finite")
_CONVERGED, _SLOW, _CAP, _NONFINITE = range(len(STOP_REASONS))


_FILE_FIELDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "x": ("f", ("N", "d")),
    "u": ("f", ("N", "m")),
    "q": ("f", ("N",)),
    "converged": ("b", ("N",)),
    "n_iters": ("iu", ("N",)),
    "x_init": ("f", ("N", "d")),
    "jacobians": ("f", ("N", "d", "d")),
    "eigvals": ("fc", ("N", "d")),
    "eigvecs": ("fc", ("N", "d", "d")),
    "left_eigvecs": ("fc", ("N", "d", "d")),
    "n_unstable": ("iu", ("N",)),
    "stability": ("U", ("N",)),
    "n_starts": ("iu", ("N",)),
    "stop_reason": ("iu", ("N",)),
    "alpha": ("f", None),
    "solver_path": ("U", ()),
    "format_version": ("iu", ()),
}
_KIND_NAMES = {"f": "a float array", "b": "a bool array", "iu": "an integer array",
               "fc": "a float or complex array", "U": "a string array"}
_NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}
# deflate compresses at most ~1032:1; a member declaring more is not a genuine npz member
_MAX_DEFLATE_RATIO = 1100


class _InvalidFile(ValueError):
    """A FixedPoints file that failed validation (re-raised as a plain ``ValueError``)."""


def _invalid(path: str, field: str | None, message: str) -> _InvalidFile:
    where = "" if field is None else f"field {field!r} "
    return _InvalidFile(f"{path!r} is not a valid FixedPoints file: {where}{message}")


def _npz_headers(path: str, zf: zipfile.ZipFile) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{field: (shape, dtype)}`` of the known fields of an npz, read from the .npy headers.

    Each member's declared data size must equal the bytes it holds (and a compressed member may
    not inflate beyond what deflate can reach), so no array is ever allocated from a size that
    the file does not back.
    """
    size = os.path.getsize(path)
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for info in zf.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else None
        if name not in _FILE_FIELDS:
            continue
        if name in headers:
            raise _invalid(path, name, "appears twice")
        stored = info.compress_type == zipfile.ZIP_STORED
        if not stored and info.compress_type != zipfile.ZIP_DEFLATED:
            raise _invalid(path, name, f"uses an unsupported compression ({info.compress_type})")
        if (info.compress_size > size or (stored and info.file_size != info.compress_size)
                or info.file_size > _MAX_DEFLATE_RATIO * max(info.compress_size, 1)):
            raise _invalid(path, name, f"declares {info.file_size} bytes ({info.compress_size} "
                                       f"stored) in a file of {size} bytes")
        try:
            with zf.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in _NPY_HEADERS:
                    raise _invalid(path, name, f"has .npy format version {version}, "
                                               "expected (1, 0) or (2, 0)")
                shape, _, dtype = _NPY_HEADERS[version](fh)
                offset = fh.tell()
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as err:
            if isinstance(err, _InvalidFile):
                raise
            raise _invalid(path, name, f"has a corrupt .npy header: {err}") from err
        if dtype.hasobject:
            raise _invalid(path, name, f"has dtype {dtype} holding Python objects; "
                                       "FixedPoints files hold plain arrays (never unpickled)")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes != info.file_size - offset:
            raise _invalid(path, name, f"declares shape {shape} dtype {dtype} ({nbytes} bytes) "
                                       f"but holds {info.file_size - offset} bytes of data")
        headers[name] = (shape, dtype)
    return headers


def _check_header_fields(path: str, headers: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
    """Dtype kind and shape of every field, and shapes consistent with ``x``'s ``(N, d)``."""
    for name, (_, dtype) in headers.items():
        kinds = _FILE_FIELDS[name][0]
        if dtype.kind not in kinds:
            raise _invalid(path, name, f"must be {_KIND_NAMES[kinds]}, got dtype {dtype}")
    x_shape = headers["x"][0]
    if len(x_shape) != 2 or x_shape[1] < 1:
        raise _invalid(path, "x", f"must have shape (N, d) with d >= 1, got {x_shape}")
    sizes = {"N": x_shape[0], "d": x_shape[1]}
    for name, (shape, _) in headers.items():
        symbols = _FILE_FIELDS[name][1]
        if symbols is None:  # alpha: a scalar or one value per state dimension
            if shape not in ((), (sizes["d"],)):
                raise _invalid(path, name, f"must have shape () or (d,) = ({sizes['d']},), "
                                           f"got {shape}")
            continue
        ok = len(shape) == len(symbols) and all(
            s not in sizes or n == sizes[s] for s, n in zip(symbols, shape, strict=False))
        if not ok:
            want = ", ".join(symbols) + ("," if len(symbols) == 1 else "")
            have = ", ".join(str(sizes.get(s, s)) for s in symbols)
            have += "," if len(symbols) == 1 else ""
            raise _invalid(path, name, f"must have shape ({want}) = ({have}) for x of shape "
                                       f"{x_shape}, got {shape}")


def _check_values(path: str, a: dict[str, np.ndarray]) -> None:
    """The values' own rules (read data): what :class:`FixedPoints`' methods rely on."""
    finite_q = np.isfinite(a["q"])
    if np.any(a["q"][finite_q] < 0):
        raise _invalid(path, "q", "must be >= 0 (q is half a squared norm)")
    bad = a["converged"] & ~(finite_q & np.all(np.isfinite(a["x"]), axis=1))
    if bad.any():
        raise _invalid(path, "converged", f"is true at entries {np.flatnonzero(bad)[:5].tolist()} "
                                          "whose x or q is not finite")
    if not np.all(np.isfinite(a["u"])):
        raise _invalid(path, "u", "must be finite")
    d = a["x"].shape[1]
    for name, low, high in (("n_iters", 0, None), ("n_starts", 0, None),
                            ("n_unstable", 0, d), ("stop_reason", 0, len(STOP_REASONS) - 1)):
        v = a.get(name)
        if v is not None and (np.any(v < low) or (high is not None and np.any(v > high))):
            span = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise _invalid(path, name, f"must be {span}, got values from {v.min()} to {v.max()}")
    if "stability" in a:
        unknown = sorted(set(a["stability"].tolist()) - set(linear.STABILITY_CLASSES) - {""})
        if unknown:
            raise _invalid(path, "stability", f"has unknown classes {unknown[:3]}; known: "
                                              f"{list(linear.STABILITY_CLASSES)} and ''")
    if "alpha" in a and not np.all(np.isfinite(a["alpha"]) & (a["alpha"] > 0)):
        raise _invalid(path, "alpha", f"must be finite and > 0, got {a['alpha']}")


