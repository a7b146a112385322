"""One vocabulary across the public API: the precision is ``dtype``, the input ``inputs``, a set
of starting states ``initial_states``; a map ``F`` comes first; a count of the wrong type is a
``TypeError`` and one out of range a ``ValueError``, each naming the argument; the former
spellings still work, with a ``DeprecationWarning``."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ctrnn_dyn
from ctrnn_dyn import linear
from ctrnn_dyn.attractors import classify_dynamics, line_attractor, lyapunov_spectrum
from ctrnn_dyn.dynamics import simulate
from ctrnn_dyn.fixed_points import find_fixed_points, sample_initial_states
from ctrnn_dyn.tasks import SineWave

#: parameter names the vocabulary replaced: precision -> dtype, u -> inputs,
#: starts -> initial_states
RETIRED = {"precision", "u", "starts"}


def _public_modules() -> list:
    names = ["ctrnn_dyn"] + [
        m.name
        for m in pkgutil.walk_packages(ctrnn_dyn.__path__, "ctrnn_dyn.")
        if not any(part.startswith("_") for part in m.name.split(".")[1:])
    ]
    return [importlib.import_module(name) for name in names]


def _is_record(cls: type) -> bool:
    """A result container (NamedTuple or dataclass): its constructor's parameters are its
    fields, data rather than options (``FixedPoints.u`` is the stored input of each point)."""
    return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))


def _public_functions() -> dict[str, object]:
    """``{qualified name: function}`` for every public function of every public module, and
    the constructor of every public class that is not a record."""
    found: dict[str, object] = {}
    for module in _public_modules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                if _is_record(obj) or obj.__init__ is object.__init__:
                    continue
                obj = obj.__init__
            elif not callable(obj) or not inspect.isroutine(inspect.unwrap(obj)):
                continue
            found.setdefault(f"{module.__name__}.{name}", obj)
    return found


def test_the_walk_finds_the_analyses():
    names = _public_functions()
    for name in (
        "ctrnn_dyn.find_fixed_points",
        "ctrnn_dyn.classify_dynamics",
        "ctrnn_dyn.line_attractor",
        "ctrnn_dyn.simulate",
        "ctrnn_dyn.linear.jacobian",
        "ctrnn_dyn.plot.phase_portrait",
        "ctrnn_dyn.train.train",
    ):
        assert name in names, name
    assert len(names) > 100


def test_no_public_function_uses_a_retired_name():
    offenders = {
        name: sorted(set(inspect.signature(fn).parameters) & RETIRED)
        for name, fn in _public_functions().items()
        if set(inspect.signature(fn).parameters) & RETIRED
    }
    assert offenders == {}


def test_the_map_comes_first():
    offenders = []
    for name, fn in _public_functions().items():
        params = [p for p in inspect.signature(fn).parameters if p != "self"]
        if "F" in params and params[0] != "F":
            offenders.append(f"{name}{inspect.signature(fn)}")
    assert offenders == []


def _linear_map(x, u):
    return 0.5 * x


#: case -> (argument, its minimum, a call with the argument's value)
def _tiny_fit(steps: int = 1, batch_size: int = 2):
    return ctrnn_dyn.fit(ctrnn_dyn.CTRNNCell(4, 1, alpha=0.5, noise_const=0.0),
                         SineWave(n_steps=5), key=jax.random.PRNGKey(0), steps=steps,
                         batch_size=batch_size, progress=False)


COUNTS = {
    "find_fixed_points max_iters": (
        "max_iters",
        1,
        lambda v: find_fixed_points(_linear_map, np.ones((2, 2)), max_iters=v),
    ),
    "find_fixed_points polish_steps": (
        "polish_steps",
        0,
        lambda v: find_fixed_points(_linear_map, np.ones((2, 2)), polish_steps=v),
    ),
    "simulate n_steps": (
        "n_steps",
        1,
        lambda v: simulate(_linear_map, jnp.ones(2), jnp.zeros(1), n_steps=v),
    ),
    "sample_initial_states n": (
        "n",
        1,
        lambda v: sample_initial_states(
            np.ones((3, 2)), v, noise_scale=0.1, key=jax.random.PRNGKey(0)
        ),
    ),
    "SineWave n_steps": ("n_steps", 1, lambda v: SineWave(n_steps=v)),
    "lyapunov_spectrum n_steps": (
        "n_steps",
        1,
        lambda v: lyapunov_spectrum(_linear_map, np.ones(2), n_steps=v),
    ),
    "classify_dynamics n_transient": (
        "n_transient",
        0,
        lambda v: classify_dynamics(_linear_map, np.ones((1, 2)), n_transient=v),
    ),
    "fit steps": ("steps", 1, lambda v: _tiny_fit(steps=v)),
    "fit batch_size": ("batch_size", 1, lambda v: _tiny_fit(batch_size=v)),
    "CTRNNCell hidden_features": (
        "hidden_features",
        1,
        lambda v: ctrnn_dyn.CTRNNCell(v, 1, alpha=0.5, noise_const=0.0),
    ),
}


@pytest.mark.parametrize("case", sorted(COUNTS))
def test_a_count_of_the_wrong_type_or_value(case):
    """``2.5``, ``2.0`` and ``True`` are not counts (``TypeError``); one below the minimum is a
    ``ValueError``; each message names the argument."""
    name, low, call = COUNTS[case]
    for wrong_type in (2.5, 2.0, True):
        with pytest.raises(TypeError, match=rf"\b{name} must be an int >= {low}, got"):
            call(wrong_type)
    with pytest.raises(ValueError, match=rf"\b{name} must be >= {low}, got {low - 1}"):
        call(low - 1)


def test_dtype_is_one_keyword_with_every_spelling():
    F = _linear_map
    for spelling in (np.float32, jnp.float32, "float32", np.dtype("float32")):
        ly = lyapunov_spectrum(F, np.array([0.3]), n_steps=20, n_transient=0, dtype=spelling)
        assert ly.final_state.dtype == np.float32
        fps = find_fixed_points(F, np.array([[0.1]]), dtype=spelling)
        assert fps.x.dtype == np.float32
    for wrong in ("float16", np.int32, None):
        with pytest.raises(TypeError, match="dtype must be float32 or float64"):
            lyapunov_spectrum(F, np.array([0.3]), n_steps=20, dtype=wrong)
        with pytest.raises(TypeError, match="dtype must be float32 or float64"):
            find_fixed_points(F, np.array([[0.1]]), dtype=wrong)


def test_former_keywords_warn_and_still_work():
    F = _linear_map
    starts = np.array([[0.2], [0.9]])
    new = classify_dynamics(
        F, initial_states=starts, inputs=None, dtype="float64", dt=0.01, n_steps=200
    )
    with pytest.warns(DeprecationWarning, match="'starts' is deprecated, use 'initial_states'"):
        old = classify_dynamics(F, starts=starts, dt=0.01, n_steps=200)
    assert old.labels == new.labels
    np.testing.assert_array_equal(old.lyapunov, new.lyapunov)
    with pytest.warns(DeprecationWarning, match="'precision' is deprecated, use 'dtype'"):
        ly = lyapunov_spectrum(F, np.array([0.3]), n_steps=20, precision="float32")
    assert ly.final_state.dtype == np.float32
    with pytest.warns(DeprecationWarning, match="'u' is deprecated, use 'inputs'"):
        J = linear.jacobian(lambda x, u: u * x, jnp.ones(2), u=jnp.full(2, 3.0))
    np.testing.assert_array_equal(J, 3.0 * np.eye(2))
    with pytest.raises(TypeError, match="got both 'precision'.*and 'dtype'"):
        lyapunov_spectrum(F, np.array([0.3]), n_steps=20, precision="float32", dtype="float32")


def test_line_attractor_takes_the_map_first_and_the_old_order_warns():
    A = jnp.array([[1.0, 0.0], [0.0, 0.5]])

    def F(x, u):
        return A.astype(x.dtype) @ x

    pts = np.stack([np.linspace(-1, 1, 5), np.zeros(5)], axis=1)
    new = line_attractor(F, pts)
    with pytest.warns(DeprecationWarning, match=r"line_attractor\(F, fixed_points\)"):
        old = line_attractor(pts, F=F)
    assert new.is_line and old.is_line and old.length == new.length
    with pytest.warns(DeprecationWarning, match="'u' is deprecated"):
        assert line_attractor(F, pts, u=None).is_line


def test_fit_is_the_training_function_and_generic_helpers_stay_in_their_module():
    import ctrnn_dyn.train

    assert "fit" in ctrnn_dyn.__all__ and ctrnn_dyn.fit is ctrnn_dyn.train.train
    assert inspect.ismodule(ctrnn_dyn.train)
    for name in ("eig", "jacobian", "classify", "continuous_eigvals"):
        assert name not in ctrnn_dyn.__all__
        with pytest.warns(DeprecationWarning, match=rf"use ctrnn_dyn\.linear\.{name}"):
            value = getattr(ctrnn_dyn, name)
        assert value is getattr(linear, name)


def test_new_spellings_raise_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        classify_dynamics(
            _linear_map, np.array([[0.2]]), None, dt=0.01, n_steps=100, dtype=np.float64
        )
        line_attractor(lambda x, u: x, np.ones((3, 1)) * np.arange(3)[:, None])
        simulate(_linear_map, jnp.ones(2), jnp.zeros(1), n_steps=3)
