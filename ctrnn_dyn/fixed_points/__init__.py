r"""Fixed and slow points of a one-step map, found with JAXopt solvers batched over starts.

A fixed point of ``F(x, u)`` under constant input ``u`` is a root of the residual
:math:`r(x) = F(x, u) - x`. Following Sussillo & Barak (2013) and FixedPointFinder (Golub &
Sussillo 2018) we minimise the *speed*

.. math::

    q(x) = \tfrac12 \lVert F(x, u) - x \rVert^2
         \;=\; \tfrac12 \alpha^2 \lVert \tau \dot x \rVert^2 \quad\text{(CT-RNN)},

from many starts (usually states visited by the network plus noise,
:func:`sample_initial_states`). Local minima with :math:`q \le` ``tol_q`` are *fixed points*;
local minima with larger ``q`` are *slow points* (approximate fixed points, e.g. along an
approximate line attractor).

How results are reported (the contract other modules rely on):

- :func:`find_fixed_points` returns a :class:`FixedPoints` in which **every entry carries its
  own final** ``q`` **and a** ``converged`` **flag** (``q <= tol_q``, recomputed after the solve).
  Fixed points are ``fps.fixed`` (``converged``); slow points are ``fps.slow``: local minima
  of ``q`` bounded away from zero (see *Stopping* below); starts still moving when their budget
  ran out are ``fps.unfinished``. ``fps.stop_reason`` records why each entry's start stopped
  (:data:`STOP_REASONS`: converged, slow point, iteration cap, non-finite) and
  ``fps.summary()`` shows it. Slow points are kept and labelled, never mixed in:
  ``fps.stable`` and the stability classes of a slow point describe the linearisation *at
  that point* and are only meaningful for fixed points, so ``fps.stable`` contains converged
  points only.
- With ``tol_unique`` set (default ``1e-3``) the result holds one entry per distinct point:
  fixed points first, then the other finite entries, lowest ``q`` kept per cluster, ascending
  ``q`` within a group. A non-converged entry within ``tol_unique`` of a fixed point is the same
  point and is merged into it; ``fps.n_starts`` counts the starts behind each entry.
  With ``tol_unique=None`` it holds one entry per start, in start order (non-finite starts are
  included, ``converged=False``, ``q=nan``).
- Distance outliers (FixedPointFinder's rule: farther from the centroid of the starts than
  ``outlier_distance_scale`` times the starts' mean distance to it) are dropped unless
  ``outlier_distance_scale=None``.

Solvers (``method``), all from JAXopt and ``vmap``-ped over starts:

- ``"lm"`` (default): ``jaxopt.LevenbergMarquardt`` on the residual; each step solves
  :math:`(J_r^\top J_r + \mu I)\,\delta = -J_r^\top r`. ``linear_solver`` says how:

  - ``"dense"``: exactly, with :math:`J_r^\top J_r` factorised per start (Cholesky), the
    solver's state holding no matrix. A map with a ``gauss_newton`` method (CT-RNN
    ``OneStepMap`` s: :meth:`~ctrnn_dyn.dynamics.OneStepMap.gauss_newton`) has the matrix
    built in :math:`O(d^2)` per start from ``K A² Kᵀ`` computed once per network (by the
    compiled step kernel itself where it runs, :mod:`ctrnn_dyn.native`); otherwise the
    residual's Jacobian :math:`J_r` is built from ``d`` Jacobian-vector products (``vmap``
    makes them one matrix product) and :math:`J_r^\top J_r` is formed by the solve itself
    (:math:`O(d^3)` per start). On 100-unit networks (256 starts, XLA's LAPACK calls) the
    map's matrix halved a step: 25 against 50 ms, of which the Cholesky factorisation and its
    triangular solves took 20 ms. Exact steps converge in 5–10 iterations.
  - ``"cg"``: matrix-free, up to ``cg_iters`` conjugate-gradient iterations (default 20,
    stopping at relative residual ``cg_tol = 1e-2``), each one ``jvp`` and one ``vjp`` of ``F``,
    which ``vmap`` turns into matrix-matrix products shared by all starts; with
    ``mixed_precision`` (default, float64 runs) those products run in float32 while residuals,
    gradients and accepted steps stay float64, so the attainable ``q`` is float64's. Truncated
    CG gives poor steps where ``J − I`` is ill-conditioned (``α = 1`` networks, trained
    flip-flops, untrained ``α = 0.1`` networks): the solver crawls (tens of iterations) and the
    Newton finish below completes the starts; truncating it further (``cg_iters=5, cg_tol=0``)
    makes that worse.
  - ``"auto"`` (default): ``"dense"`` for ``d <= 100``, ``"cg"`` above. Measured
    (``benchmarks/fixed_points_cases.py``, ``benchmarks/fpf_real.py``): dense is 1.3–2x faster
    on 16-unit flip-flops and 100-unit ``α = 0.1`` networks, about even at 32 units, 16 %
    slower on a 16-unit GRU whose starts crawl to the cap, and 10x slower on the 128-unit
    pattern network (1024 starts, where CG converges well).
  - ``"cholesky"``: jaxopt's materialised-Jacobian LM (analytic Jacobian for CT-RNN
    ``OneStepMap`` s); like ``"dense"`` but the state carries ``J``, ``Jᵀ`` and ``JᵀJ`` per start.
- ``"lbfgs"``: ``jaxopt.LBFGS`` on ``q``.
- ``"gd"``: ``jaxopt.GradientDescent`` (backtracking line search, Nesterov acceleration) on ``q``.

Starts run in rounds of ``chunk_iters`` solver iterations; after each round the starts that have
converged (or stopped) are retired and the rest are compacted into a smaller batch (at most three
sizes per call: all starts, about an eighth of them, and 32, so a first call compiles two or
three shapes and a second call with the same shapes compiles nothing; where all starts fit one
batch the rows stay in place and retired rows are frozen, not gathered). Within a round a
network's rows run in blocks of an eighth (at least 32 rows), the running rows sorted first,
one block of one network after another: a block's loop ends with its own rows, and blocks of
frozen rows are not run. So the cost follows the sum of iterations over starts rather than the
slowest start, and in a batch of networks the slowest network's. The Newton finish and
restarts below run on blocks of 32 rows (one compiled shape however many starts need them).
The finder's programs are compiled at LLVM optimisation level 1 (a third less compile time, the
same run time).

Many networks: :func:`find_fixed_points_batch` takes ``E`` maps of one shape (an ensemble's,
stacked on a network axis) and runs the solver's rounds — every start of every network, where
nearly all the work is — in one program per round, split over devices when there are several
(``devices="auto"``); the Newton finish and the linearisation then run network by network on
shared compiled programs. The results are what :func:`find_fixed_points` gives map by map.

Stopping. The solver stops a start when ``q <= tol_q`` (converged), when ``‖∇q‖ <= tol_grad``
or ``‖∇q‖ <= grad_rtol·‖r‖``, after ``max_iters`` iterations, or on a non-finite step (the last
finite ``x`` is kept). No start above ``tol_q`` is labelled from that alone: every one is then
*finished* with Newton steps :math:`x \leftarrow x - t\,(J - I)^{-1} r(x)`, ``t`` in ``1, ½, ¼``,
taken while they at least halve ``q`` (up to ``polish_steps``), so a start whose ``q`` is still
falling towards zero ends at a fixed point (at float64's rounding floor) whatever its iteration
budget. A *slow point* is what remains: a start at which the Newton step's predicted decrease
(to ``q = 0``) fails — ``J − I`` is (nearly) singular along the residual, as at any local minimum
of ``q`` above zero — and which the solver had stopped on a vanishing gradient or whose residual
is nearly orthogonal to the range of ``J − I`` (``‖(J−I)ᵀr‖ <= slow_rtol·‖J−I‖_F‖r‖``). A
start that fits neither is recorded as stopped at the iteration cap (``fps.unfinished``).
Everything runs in float64 by default, switched on locally with ``jax.enable_x64``.
"""

from ctrnn_dyn.fixed_points.container import FixedPoints as FixedPoints
from ctrnn_dyn.fixed_points.fileformat import STOP_REASONS as STOP_REASONS
from ctrnn_dyn.fixed_points.find import find_fixed_points as find_fixed_points
from ctrnn_dyn.fixed_points.find import find_fixed_points_batch as find_fixed_points_batch
from ctrnn_dyn.fixed_points.solvers import METHODS as METHODS
from ctrnn_dyn.fixed_points.starts import continue_fixed_points as continue_fixed_points
from ctrnn_dyn.fixed_points.starts import sample_initial_states as sample_initial_states

__all__ = [
    "METHODS",
    "STOP_REASONS",
    "FixedPoints",
    "continue_fixed_points",
    "find_fixed_points",
    "find_fixed_points_batch",
    "sample_initial_states",
]
