r"""Attractors beyond fixed points: limit cycles, Lyapunov spectra, line attractors, verdicts.

Everything acts on a one-step map ``F(x, u) -> x_next`` of unbatched arrays (see
:mod:`ctrnn_dyn.dynamics`), with a step of ``dt`` time units. Rates (Lyapunov exponents) are
reported *per unit time*: an exponent per step divided by ``dt``.

* :func:`find_limit_cycle` — settle, detect recurrence on a Poincaré section, refine by Newton,
  Floquet multipliers from the monodromy matrix; :func:`find_limit_cycle_batch` for many maps
  of one shape (settling in one compiled program, Newton iterations shared).
* :func:`lyapunov_spectrum` — Benettin's QR method,
  :math:`Q_{t+1}R_{t+1} = DF(x_t)\,Q_t`, :math:`\lambda_i = \frac{1}{N\,dt}\sum_t\log|R_{t,ii}|`;
  :func:`lyapunov_spectrum_batch` for many maps of one shape in one compiled program.
* :func:`line_attractor` — do fixed/slow points form a 1-D manifold with one eigenvalue
  :math:`\mu \approx 1` (continuous :math:`\lambda \approx 0`) along it?
* :func:`classify_dynamics` — per start: fixed point / limit cycle / quasi-periodic / chaotic /
  divergent, with the numbers behind each verdict; :func:`classify_dynamics_batch` for many
  maps of one shape (an ensemble) in one compiled program, ``vmap`` -ped over their stacked
  parameters and split over the devices when there are several (``devices="auto"``).

Heavy lifting is ``lax.scan`` under ``jit`` and ``vmap`` over starts; the computations run in
float64 (switched on locally with ``jax.enable_x64``) unless ``dtype=np.float32``.

One vocabulary across them (and :mod:`ctrnn_dyn.fixed_points`): the map ``F`` first, the
constant input ``inputs``, a set of starting states ``initial_states`` (one trajectory's start
``x0``), the precision ``dtype``; a count of the wrong type is a ``TypeError``, out of range a
``ValueError``, each naming the argument.
"""

from ctrnn_dyn.attractors.classify import LABELS as LABELS
from ctrnn_dyn.attractors.classify import DynamicsClassification as DynamicsClassification
from ctrnn_dyn.attractors.classify import classify_dynamics as classify_dynamics
from ctrnn_dyn.attractors.classify import classify_dynamics_batch as classify_dynamics_batch
from ctrnn_dyn.attractors.cycles import CircleRotation as CircleRotation
from ctrnn_dyn.attractors.cycles import LimitCycle as LimitCycle
from ctrnn_dyn.attractors.cycles import circle_rotation as circle_rotation
from ctrnn_dyn.attractors.cycles import find_limit_cycle as find_limit_cycle
from ctrnn_dyn.attractors.cycles import find_limit_cycle_batch as find_limit_cycle_batch
from ctrnn_dyn.attractors.lines import LineAttractor as LineAttractor
from ctrnn_dyn.attractors.lines import line_attractor as line_attractor
from ctrnn_dyn.attractors.lyapunov import LyapunovSpectrum as LyapunovSpectrum
from ctrnn_dyn.attractors.lyapunov import lyapunov_spectrum as lyapunov_spectrum
from ctrnn_dyn.attractors.lyapunov import lyapunov_spectrum_batch as lyapunov_spectrum_batch

__all__ = [
    "LimitCycle",
    "find_limit_cycle",
    "find_limit_cycle_batch",
    "LyapunovSpectrum",
    "lyapunov_spectrum",
    "lyapunov_spectrum_batch",
    "LineAttractor",
    "line_attractor",
    "CircleRotation",
    "circle_rotation",
    "DynamicsClassification",
    "classify_dynamics",
    "classify_dynamics_batch",
    "LABELS",
]
