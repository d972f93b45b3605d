import os

import pytest
import torch

# xdist runs one process per core: more torch threads than cores per process would oversubscribe
# the CPU (OpenMP threads spinning against each other), and the slow training tests crawl.
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))


@pytest.fixture
def ros_context():
    """A real rclpy context on a DDS domain of its own (one per xdist worker), shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    domain = 40 + int(worker[2:] or 0) if worker.startswith("gw") else 40
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        yield ctx
    finally:
        ctx.try_shutdown()


@pytest.fixture(scope="session")
def exported_default():
    """The main job's committed default checkpoint (config/sim_act.yaml's artifact) exported to ONNX
    (kairos export), cached under build/ so every test and xdist worker reuses one export (about a
    minute on 2 cores)."""
    import yaml
    from training.export import ensure_exported
    with open("config/sim_act.yaml") as f:
        artifact = yaml.safe_load(f)["kairos_act"]["ros__parameters"]["artifact"]
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build", "test-exported")
    return ensure_exported(artifact, cache_root=root), root
