import os

import pytest


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
