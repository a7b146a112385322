r"""Figures of dynamics: phase portraits, fixed points in PCA space, spectra, attractors, curves.

Every function takes an optional ``ax`` (a new figure is made when it is ``None``), draws on
it, and returns it; none calls ``plt.show()``. Every function draws inside the package's one
figure style, :func:`style` (the rcParams of :func:`paper_style`): 7-pt DejaVu Sans text, which
stays readable when a figure :data:`PAGE_WIDTH` (7.2 in) wide is printed across a journal page
or one :data:`COLUMN_WIDTH` (3.5 in) wide in a column; thin lines; the colour-blind-safe
Okabe & Ito (2008) cycle; legends outside the axes (:func:`legend_outside`); colour bars for
continuous variables (:func:`value_colors`, :func:`colorbar`); figures saved as a PNG at
:data:`SAVE_DPI` plus a vector PDF (:func:`save_figure`). Build multi-panel figures inside
``with plot.style(): ...`` so that their titles and labels share it.

One marker code for fixed and slow points runs through all figures (:data:`POINT_STYLE`,
chosen by :func:`point_class` from a point's class and number of unstable modes; filled
markers are stable, open ones unstable in some direction):

=========================== =================== ==========================
class                       marker              colour
=========================== =================== ==========================
stable node                 filled circle       black
stable focus                filled circle       blue
saddle, 1 unstable mode     open triangle       vermillion
saddle, 2 unstable modes    open diamond        reddish purple
saddle, ≥ 3 unstable modes  open pentagon       sky blue
unstable node               open square         orange
unstable focus              open hexagon        orange
marginal                    filled plus         bluish green
slow point                  cross               grey
=========================== =================== ==========================
"""

from __future__ import annotations

from ctrnn_dyn.plot.annotate import colorbar as colorbar
from ctrnn_dyn.plot.annotate import label_panels as label_panels
from ctrnn_dyn.plot.annotate import legend_outside as legend_outside
from ctrnn_dyn.plot.annotate import panel_label as panel_label
from ctrnn_dyn.plot.annotate import value_colors as value_colors
from ctrnn_dyn.plot.figure_style import COLUMN_WIDTH as COLUMN_WIDTH
from ctrnn_dyn.plot.figure_style import OKABE_ITO as OKABE_ITO
from ctrnn_dyn.plot.figure_style import PAGE_WIDTH as PAGE_WIDTH
from ctrnn_dyn.plot.figure_style import SAVE_DPI as SAVE_DPI
from ctrnn_dyn.plot.figure_style import paper_style as paper_style
from ctrnn_dyn.plot.figure_style import save_figure as save_figure
from ctrnn_dyn.plot.figure_style import style as style
from ctrnn_dyn.plot.fixed_points3d import fixed_points_3d as fixed_points_3d
from ctrnn_dyn.plot.orbits import attractor_3d as attractor_3d
from ctrnn_dyn.plot.orbits import trajectories as trajectories
from ctrnn_dyn.plot.phase import phase_portrait as phase_portrait
from ctrnn_dyn.plot.points import POINT_STYLE as POINT_STYLE
from ctrnn_dyn.plot.points import STABILITY_STYLE as STABILITY_STYLE
from ctrnn_dyn.plot.points import mark_points as mark_points
from ctrnn_dyn.plot.points import point_class as point_class
from ctrnn_dyn.plot.points import point_classes as point_classes
from ctrnn_dyn.plot.spectra import eigenspectrum as eigenspectrum
from ctrnn_dyn.plot.training import loss_curve as loss_curve

__all__ = [
    "COLUMN_WIDTH",
    "PAGE_WIDTH",
    "label_panels",
    "SAVE_DPI",
    "OKABE_ITO",
    "POINT_STYLE",
    "STABILITY_STYLE",
    "paper_style",
    "style",
    "point_class",
    "point_classes",
    "mark_points",
    "legend_outside",
    "panel_label",
    "value_colors",
    "colorbar",
    "save_figure",
    "phase_portrait",
    "fixed_points_3d",
    "eigenspectrum",
    "attractor_3d",
    "trajectories",
    "loss_curve",
]
