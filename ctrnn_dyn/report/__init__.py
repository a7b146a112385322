r"""The analysis report of a trained run: fixed and slow points, stability, long-run dynamics.

:func:`analyze_run` reverse-engineers a network saved by ``ctrnn-dyn train`` (a run directory,
read with :func:`ctrnn_dyn.runs.load_run`) in the steps of Sussillo & Barak (2013):

1. **Trajectories.** The trained network's one-step map ``F`` (noise off) is run from the
   cell's initial state over ``n_trials`` trials of the run's own task, drawn with ``k_trials``
   → states ``(B, T, n)``.
2. **Starts.** ``n_starts`` states sampled from those trajectories plus Gaussian noise of
   ``noise_scale`` (:func:`ctrnn_dyn.fixed_points.sample_initial_states`, key ``k_starts``).
3. **Fixed and slow points** under each constant input ``u`` (default: zero input), from those
   starts: :func:`ctrnn_dyn.fixed_points.find_fixed_points`, which minimises
   :math:`q(x) = \tfrac12\lVert F(x, u) - x\rVert^2`, linearises every point (map Jacobian
   :math:`J`, multipliers :math:`\mu`) and classifies it in the discrete-time sense (stable iff
   every :math:`|\mu| < 1`). The report adds the continuous-time sense: the eigenvalues
   :math:`\lambda` of :math:`(J - I)/\alpha` (:math:`\lambda = (\mu - 1)/\alpha` for a scalar
   :math:`\alpha`), stable iff every :math:`\operatorname{Re}\lambda < 0`.
4. **Long-run behaviour** from the first ``n_dynamics`` starts under each input:
   :func:`ctrnn_dyn.attractors.classify_dynamics` (fixed point, limit cycle, quasi-periodic,
   chaotic or divergent, with the leading Lyapunov exponents per unit time :math:`\tau` when
   :math:`\alpha` is a scalar, else per step).

The keys are ``k_trials, k_starts = jax.random.split(jax.random.PRNGKey(seed))``, so the same
starts can be rebuilt outside (see :func:`analysis_starts`). :func:`write_report` writes

* ``analysis.png``: trajectories and fixed points in 3-D PCA space, the multipliers
  :math:`\mu` with the unit circle, the eigenvalues :math:`\lambda` with the imaginary axis,
  and the verdicts;
* ``analysis.json``: the numbers (per input: counts per stability class and per number of
  unstable modes, each fixed point's ``q``, class, unstable modes in both senses, leading
  multipliers and readout; the slow points' ``q``; ``n_other``, entries that are neither, such
  as starts stopped by their iteration budget; the dynamics' labels and exponents);
* ``fixed_points.npz``: every entry :func:`~ctrnn_dyn.fixed_points.find_fixed_points` returned
  for every input (:meth:`ctrnn_dyn.fixed_points.FixedPoints.save`; ``u`` says which input;
  the ``index`` of each fixed point in the JSON points into it).

From the shell::

    ctrnn-dyn train --task flipflop --hidden 32 --steps 500 --lr 1e-2 --out runs/ff
    ctrnn-dyn analyze runs/ff                    # writes runs/ff/analysis/
"""

from __future__ import annotations

from ctrnn_dyn.report.analysis import AnalysisReport as AnalysisReport
from ctrnn_dyn.report.analysis import InputAnalysis as InputAnalysis
from ctrnn_dyn.report.analysis import analyze_run as analyze_run
from ctrnn_dyn.report.output import REPORT_FILES as REPORT_FILES
from ctrnn_dyn.report.output import write_report as write_report
from ctrnn_dyn.report.starts import analysis_starts as analysis_starts
from ctrnn_dyn.report.starts import task_trajectories as task_trajectories

__all__ = [
    "REPORT_FILES",
    "AnalysisReport",
    "InputAnalysis",
    "analysis_starts",
    "analyze_run",
    "task_trajectories",
    "write_report",
]
