"""Validation of training hyper-parameters: one set of rules for ``train``, the CLI and sweeps.

Every boundary that accepts a hyper-parameter (:func:`ctrnn_dyn.train.train`,
:func:`ctrnn_dyn.train.default_optimizer`, ``ctrnn-dyn train``'s options, a sweep file's
``[cell]``/``[train]``/``[grid]`` values) checks it here, so a value is accepted or refused the
same way everywhere and the message says what is expected:

=================  ===================  ==================================================
name               expected             why
=================  ===================  ==================================================
``learning_rate``  a number ``> 0``     ``<= 0`` stalls or runs gradient *ascent*
``clip_norm``      a number ``> 0``     a negative clip flips the gradient's sign
``weight_decay``   a number ``>= 0``
``b1``, ``b2``     a number in [0, 1)   Adam's moment decays
``alpha``          a number in (0, 1]   ``dt / tau`` of the Euler step
``noise_const``    a number ``>= 0``    noise scale ``sigma``
``rate_l2``        a number ``>= 0``    regulariser weights
``weight_l2``      a number ``>= 0``
=================  ===================  ==================================================

All must be finite; ``bool`` and strings are refused (``TypeError``). Task options (a task's
keyword arguments) must hold finite numbers only (:func:`check_task_options`).

The public API's shared vocabulary is checked here too, so every function refuses a value the
same way (``TypeError`` for a wrong type, ``ValueError`` for a wrong value, the message naming
the argument):

* counts (``n_steps``, ``max_iters``, ``batch_size``, ...): :func:`check_int`, an ``int`` (not a
  ``bool``) at least a minimum;
* precision: :func:`float_dtype`, the keyword ``dtype`` as ``np.float32``/``np.float64``, JAX's
  dtypes or the strings ``"float32"``/``"float64"``; :func:`precision_context` switches float64
  on locally for a computation in it;
* renamed keywords: :func:`renamed` keeps an old keyword working, with a ``DeprecationWarning``.

This module imports nothing heavy (no JAX), so the command line can check its options before
loading the numerical stack.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["HPARAM_RANGES", "hparam_problem", "check_hparam", "check_hparams",
           "task_option_problem", "check_task_options", "check_int", "float_dtype",
           "precision_context", "renamed", "per_item"]

_INF = math.inf

#: name -> (low, low included, high, high included)
HPARAM_RANGES: dict[str, tuple[float, bool, float, bool]] = {
    "learning_rate": (0.0, False, _INF, False),
    "clip_norm": (0.0, False, _INF, False),
    "weight_decay": (0.0, True, _INF, False),
    "b1": (0.0, True, 1.0, False),
    "b2": (0.0, True, 1.0, False),
    "alpha": (0.0, False, 1.0, True),
    "noise_const": (0.0, True, _INF, False),
    "rate_l2": (0.0, True, _INF, False),
    "weight_l2": (0.0, True, _INF, False),
}

#: hyper-parameters that may also be one value per neuron (a list of numbers)
_PER_NEURON = {"alpha"}


def _range_text(name: str) -> str:
    low, low_in, high, high_in = HPARAM_RANGES[name]
    if high == _INF:
        return f"{'>=' if low_in else '>'} {low:g}"
    return f"in {'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"


def _is_array(value: Any) -> bool:
    """An array (NumPy, JAX, a tracer), as opposed to a Python or NumPy scalar."""
    return hasattr(value, "shape") and not isinstance(value, numbers.Number)


def _is_number(value: Any) -> bool:
    import numpy as np

    return (isinstance(value, numbers.Real)
            and not isinstance(value, bool | np.bool_))


def hparam_problem(name: str, value: Any) -> tuple[type[Exception], str] | None:
    """What is wrong with ``value`` as hyper-parameter ``name``, or ``None`` if it is valid.

    Args:
        name: a key of :data:`HPARAM_RANGES`.
        value: the value to check.

    Returns:
        ``None``, or ``(TypeError or ValueError, "must be ..., got ...")`` — the message without
        the field's name, for the caller to prefix with its own spelling of it.
    """
    if name not in HPARAM_RANGES:
        raise KeyError(f"no rule for hyper-parameter {name!r}; known: {', '.join(HPARAM_RANGES)}")
    rng = _range_text(name)
    if name in _PER_NEURON and isinstance(value, list | tuple):
        if not value:
            return ValueError, f"must be a number {rng} or a non-empty list of them, got []"
        for v in value:
            problem = hparam_problem(name, v)
            if problem is not None:
                return problem[0], f"must be a number {rng} (or a list of them), got {value!r}"
        return None
    if not _is_number(value):
        return TypeError, f"must be a number {rng}, got {type(value).__name__} {value!r}"
    v = float(value)
    if not math.isfinite(v):
        return ValueError, f"must be a finite number {rng}, got {value!r}"
    low, low_in, high, high_in = HPARAM_RANGES[name]
    if v < low or (v == low and not low_in) or v > high or (v == high and not high_in):
        return ValueError, f"must be {rng}, got {value!r}"
    return None


def check_hparam(name: str, value: Any, *, label: str | None = None) -> None:
    """Raise if ``value`` is not a valid hyper-parameter ``name`` (see the module's table).

    Args:
        name: a key of :data:`HPARAM_RANGES`.
        value: the value.
        label: how the caller names the field in the message (default ``name``; the CLI passes
            ``--clip``, a sweep ``train.clip_norm``).

    Raises:
        TypeError: not a number (a string, a bool, ``None``, ...).
        ValueError: not finite or out of range; the message is ``"<label> must be ..., got ..."``.
    """
    problem = hparam_problem(name, value)
    if problem is not None:
        exc, msg = problem
        raise exc(f"{label or name} {msg}")


def check_hparams(values: Mapping[str, Any], *, labels: Mapping[str, str] | None = None,
                  skip_arrays: bool = False) -> None:
    """:func:`check_hparam` on each ``name: value`` of ``values``, in order.

    Args:
        values: ``{name: value}``; names are keys of :data:`HPARAM_RANGES`.
        labels: optional ``{name: label}`` for the messages.
        skip_arrays: leave arrays alone (JAX tracers and the per-network arrays of
            ``optax.inject_hyperparams``) and callables (learning-rate schedules).
    """
    labels = labels or {}
    for name, value in values.items():
        if skip_arrays and (_is_array(value) or callable(value)):
            continue
        check_hparam(name, value, label=labels.get(name, name))


def task_option_problem(value: Any) -> str | None:
    """``"must be finite, got ..."`` when ``value`` (a task option: a number, a string, or a
    nested list/tuple of them) holds a NaN or an infinity; else ``None``."""

    def finite(v: Any) -> bool:
        if isinstance(v, list | tuple):
            return all(finite(x) for x in v)
        if _is_number(v):
            return math.isfinite(float(v))
        return True

    return None if finite(value) else f"must be finite, got {value!r}"


def check_task_options(options: Mapping[str, Any], *, label: str = "task option") -> None:
    """Raise ``ValueError("<label> <key> must be finite, got ...")`` for the first option that
    holds a NaN or an infinity (the tasks check their own ranges when constructed)."""
    for key, value in options.items():
        problem = task_option_problem(value)
        if problem is not None:
            raise ValueError(f"{label} {key} {problem}")


def first_difference(saved: Mapping[str, Any], now: Mapping[str, Any],
                     keys: list[str] | tuple[str, ...] | None = None) -> str | None:
    """The first key (in ``keys``' order; default: ``now``'s keys, then ``saved``'s) whose value
    differs between two settings mappings, or ``None``. A key missing on one side differs
    unless ``keys`` is given, in which case keys missing from either side are skipped (a record
    written before that setting was recorded)."""
    if keys is None:
        order = [*now, *(k for k in saved if k not in now)]
        for k in order:
            if k not in saved or k not in now or saved[k] != now[k]:
                return k
        return None
    for k in keys:
        if k in saved and k in now and saved[k] != now[k]:
            return k
    return None


def check_int(name: str, value: Any, low: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer ``>= low``; else raise naming ``name``.

    Raises:
        TypeError: not an integer (a float such as ``2.5`` or ``2.0``, a ``bool``, a string,
            ``None``); the message is ``"<name> must be an int >= <low>, got <type> <value>"``.
        ValueError: an integer below ``low``: ``"<name> must be >= <low>, got <value>"``.
    """
    import numpy as np

    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {low}, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def float_dtype(dtype: Any, name: str = "dtype") -> Any:
    """The NumPy dtype ``float32`` or ``float64`` that ``dtype`` names.

    Args:
        dtype: ``np.float32``/``np.float64``, ``jnp.float32``/``jnp.float64``, a NumPy dtype of
            either, or the strings ``"float32"``/``"float64"``.
        name: the argument's name for the message.

    Returns:
        ``np.dtype("float32")`` or ``np.dtype("float64")``.

    Raises:
        TypeError: anything else (``"float16"``, ``None``, an integer type, ...), naming ``name``.
    """
    import numpy as np

    problem = f"{name} must be float32 or float64 (np.float32, np.float64, jnp.float32, "
    problem += f"jnp.float64, 'float32' or 'float64'), got {dtype!r}"
    if dtype is None or isinstance(dtype, bool):
        raise TypeError(problem)
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(problem) from err
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(problem)
    return dt


def precision_context(dtype: Any) -> contextlib.AbstractContextManager:
    """A context in which arrays of ``dtype`` (already checked by :func:`float_dtype`) can be
    made: ``jax.enable_x64(True)`` for float64, else nothing changes."""
    import numpy as np

    if np.dtype(dtype) == np.dtype(np.float64):
        import jax

        return jax.enable_x64(True)
    return contextlib.nullcontext()


def renamed(**aliases: str) -> Callable[[Callable], Callable]:
    """Keep old keyword names of a function working while they are deprecated.

    ``@renamed(precision="dtype", u="inputs")`` lets ``f(..., precision=x)`` mean
    ``f(..., dtype=x)`` with a ``DeprecationWarning`` naming the new keyword; passing both the
    old and the new keyword is a ``TypeError``. The wrapped function keeps its signature
    (``inspect.signature`` follows ``__wrapped__``), which names only the new keywords.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in aliases.items():
                if old not in kwargs:
                    continue
                if new in kwargs:
                    raise TypeError(f"{fn.__name__}() got both {old!r} (deprecated) and {new!r}; "
                                    f"pass only {new!r}")
                warnings.warn(f"{fn.__name__}(): the keyword {old!r} is deprecated, use {new!r}",
                              DeprecationWarning, stacklevel=2)
                kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        wrapper.__renamed_keywords__ = dict(aliases)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def per_item(value: Any, n: int, name: str, ndim: int | None = None,
             item: str = "network") -> list[Any]:
    """``value`` for each of ``n`` items (networks, maps): ``None`` for all; a list or tuple of
    ``n``, one each; with ``ndim``, an array of ``ndim + 1`` dimensions, the item axis first;
    anything else is shared by all.

    Raises:
        ValueError: a list or tuple, or a stacked array, whose length is not ``n``.
    """
    if value is None:
        return [None] * n
    if isinstance(value, list | tuple):
        if len(value) != n:
            raise ValueError(f"{name} given per {item} must have length {n}, got {len(value)}")
        return list(value)
    shape = getattr(value, "shape", None)
    if ndim is not None and shape is not None and len(shape) == ndim + 1:
        if shape[0] != n:
            raise ValueError(f"{name} has shape {tuple(shape)}; its first axis must be {n}, "
                             f"one per {item}")
        return list(value)
    return [value] * n
