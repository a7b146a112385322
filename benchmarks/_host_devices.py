"""Expose the CPU's cores as JAX devices from a benchmark's ``--host-devices N`` argument
(``XLA_FLAGS=--xla_force_host_platform_device_count=N``); it must run before JAX is
imported, so the benchmarks call it at the top of the script."""

from __future__ import annotations

import os


def expose_host_devices(argv: list[str], default: int) -> int:
    """Set XLA's host device count from ``--host-devices N`` in ``argv`` (else ``default``) unless
    ``XLA_FLAGS`` already sets one; ``1`` leaves the flags alone. Returns ``N``."""
    n = default
    for i, arg in enumerate(argv):
        if arg == "--host-devices" and i + 1 < len(argv):
            n = int(argv[i + 1])
        elif arg.startswith("--host-devices="):
            n = int(arg.split("=", 1)[1])
    flags = os.environ.get("XLA_FLAGS", "")
    if n > 1 and "xla_force_host_platform_device_count" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()
    return n
