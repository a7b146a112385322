"""Shared plumbing of the reproductions: argument checks, JSON-able numbers, figure, JSON and
data output.

Every reproduction builds its figure inside :func:`ctrnn_dyn.plot.style` on a
:func:`new_figure` at most :data:`~ctrnn_dyn.plot.PAGE_WIDTH` (7.2 in) wide, so its text is
read at print size, and calls :func:`write_reproduction` once, which writes

* ``OUT/NAME.png`` (``plot.SAVE_DPI`` = 300 dpi) and ``OUT/NAME.pdf`` (vector), the figure;
* ``OUT/NAME.json``:

  .. code-block:: text

      {"name": ..., "quick": bool, "seed": int,
       "claims": {...},          # the numbers the figure shows
       "checks": {name: bool},   # each quantitative claim of the reproduction, checked
       "claim_results": [{"claim": name, "criterion": str, "value": ..., "pass": bool}],
       "settings": {...},        # every size / hyper-parameter used
       "versions": {...},        # python, jax, flax, optax, jaxopt, numpy, ..., ctrnn_dyn
       "wall_time_s": float}

* ``OUT/NAME.npz`` (:func:`save_data`; no pickled objects, it loads with
  ``np.load(path, allow_pickle=False)``): the data behind the figure, so that a claim can be
  re-checked with NumPy alone, without training again. Its keys:

  - one network, under the seed's names (:func:`network_arrays`): ``recurrent_kernel``
    ``(n, n)`` (rows presynaptic: the recurrent drive is ``f(x) @ recurrent_kernel +
    recurrent_bias``), ``recurrent_bias`` ``(n,)``, ``input_kernel`` ``(m, n)``,
    ``output_kernel`` ``(n, p)``, ``output_bias`` ``(p,)``, ``alpha`` (``()`` or ``(n,)``);
    several networks under ``net/<name>/<key>`` with the same keys;
  - per analysed condition the fixed points as :meth:`~ctrnn_dyn.fixed_points.FixedPoints.save`
    writes them, under ``fp/<condition>/<field>`` (``x``, ``u``, ``q``, ``converged``,
    ``n_iters``, ``x_init``, ``eigvals``, ``n_unstable``, ``stability``, ``n_starts``,
    ``stop_reason``, ``alpha``, ``format_version``); the ``(N, d, d)`` fields
    (``jacobians``, ``eigvecs``, ``left_eigvecs``) are left out unless asked for, since they
    follow from the saved parameters (:func:`load_fixed_points` recomputes nothing; it returns
    them as ``None``);
  - further arrays under the names each reproduction's docstring lists.
"""

from __future__ import annotations

from ctrnn_dyn.reproduce._common.data import LARGE_FIXED_POINT_FIELDS as LARGE_FIXED_POINT_FIELDS
from ctrnn_dyn.reproduce._common.data import load_fixed_points as load_fixed_points
from ctrnn_dyn.reproduce._common.data import network_arrays as network_arrays
from ctrnn_dyn.reproduce._common.data import save_data as save_data
from ctrnn_dyn.reproduce._common.output import jsonable as jsonable
from ctrnn_dyn.reproduce._common.output import new_figure as new_figure
from ctrnn_dyn.reproduce._common.output import software_versions as software_versions
from ctrnn_dyn.reproduce._common.output import write_reproduction as write_reproduction
from ctrnn_dyn.reproduce._common.run import FORWARD_PASSES as FORWARD_PASSES
from ctrnn_dyn.reproduce._common.run import ReproductionResult as ReproductionResult
from ctrnn_dyn.reproduce._common.run import Timer as Timer
from ctrnn_dyn.reproduce._common.run import check_run_args as check_run_args
from ctrnn_dyn.reproduce._common.run import with_forward as with_forward
from ctrnn_dyn.reproduce._common.training import TrainedNetwork as TrainedNetwork
from ctrnn_dyn.reproduce._common.training import readout as readout
from ctrnn_dyn.reproduce._common.training import rollout as rollout
from ctrnn_dyn.reproduce._common.training import train_network as train_network

__all__ = [
    "ReproductionResult",
    "Timer",
    "check_run_args",
    "jsonable",
    "load_fixed_points",
    "network_arrays",
    "new_figure",
    "save_data",
    "software_versions",
    "write_reproduction",
]
