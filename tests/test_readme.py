"""The README's "analyse your own network" example runs as written and finds the flip-flop's
published structure (Sussillo & Barak 2013): 8 stable fixed points whose readouts are the 8 bit
patterns, and 12 one-mode saddles, each between two memories that differ in one bit."""

import itertools
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_analysis_example_finds_the_flipflop_structure():
    text = README.read_text()
    section = text.split("## Analysing your own network", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    fps, result = namespace["fps"], namespace["result"]
    fixed = fps.fixed
    assert len(fixed) > 0 and (fixed.q <= 1e-20).all()
    assert namespace["ax"].name == "3d"
    plt.close("all")

    tree = result.params["params"]["cell"]
    K_out = np.asarray(tree["output_kernel"]["kernel"], np.float64)
    b_out = np.asarray(tree["output_kernel"]["bias"], np.float64)

    def readout(x):
        return np.tanh(x) @ K_out + b_out

    stable = fixed.stable
    assert len(stable) == 8
    patterns = {tuple(p) for p in itertools.product((-1.0, 1.0), repeat=3)}
    assert {tuple(np.sign(y)) for y in readout(stable.x)} == patterns
    one_mode = fixed[(fixed.stability == "saddle") & (fixed.n_unstable == 1)]
    assert len(one_mode) == 12
    # between two memories: two bits held at +-1, the third undecided
    y = readout(one_mode.x)
    assert np.all(np.sum(np.abs(y) > 0.5, axis=1) == 2)
