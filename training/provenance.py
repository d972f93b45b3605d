"""What decides a training run's arithmetic, recorded beside its results so that two runs that differ
can be told apart: torch's intra-op thread count and the CPU (float reductions are split by thread
and vectorised by instruction set, so either changes the last bits of a sum, and thousands of steps
grow those bits into a different model), torch and numpy versions. A run is bit-reproducible for a
seed only where all of these match (and its data: training/experiments/goal_pixels.py hashes that)."""
from __future__ import annotations

import platform


def arithmetic() -> dict:
    """{"torch_threads", "cpu", "torch", "numpy"} of this process."""
    import numpy as np
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    out = {"torch_threads": torch.get_num_threads(), "cpu": cpu, "torch": torch.__version__, "numpy": np.__version__}
    if torch.cuda.is_available():
        out["cuda_device"] = torch.cuda.get_device_name(0)
    return out
