"""The README's "analyse your own network" example runs (at a smaller training budget)."""

import re
from pathlib import Path

import matplotlib.pyplot as plt

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_analysis_example_runs():
    text = README.read_text()
    section = text.split("## Analysing your own network", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "steps=1500" in code
    namespace: dict = {}
    exec(compile(code.replace("steps=1500", "steps=30"), "README.md", "exec"), namespace)
    fps = namespace["fps"]
    assert len(fps) > 0 and (fps.q[fps.converged] <= 1e-20).all()
    assert namespace["ax"].name == "3d"
    plt.close("all")
