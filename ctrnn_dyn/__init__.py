"""ctrnn_dyn: train continuous-time RNNs in JAX and reverse-engineer their dynamics."""

from ctrnn_dyn.dynamics import one_step_map as one_step_map
from ctrnn_dyn.dynamics import simulate as simulate
from ctrnn_dyn.dynamics import vector_field as vector_field
from ctrnn_dyn.model import CTRNNCell as CTRNNCell
from ctrnn_dyn.model import RateCTRNNCell as RateCTRNNCell
from ctrnn_dyn.model import rnn as rnn

__version__ = "0.1.0"
