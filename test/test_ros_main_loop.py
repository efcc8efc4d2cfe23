"""xmod_node's main loop: a message rclpy fails to take is dropped with a warning and the node
goes on; shutdown ends the loop with status 0."""
import os

import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 200 + 1))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from xmod_ros import node as xnode  # noqa: E402


def test_a_failed_take_does_not_stop_the_node(monkeypatch):
    calls, warnings = [], []

    class Stub(Node):
        def __init__(self):
            super().__init__("xmod_node_loop_test")

        def start(self, spin):
            pass

        def shutdown(self):
            pass

    class FlakyExecutor(SingleThreadedExecutor):
        def spin_once(self, timeout_sec=None):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("Unable to convert call argument '0' to Python object")
            if len(calls) == 4:
                rclpy.shutdown()

    monkeypatch.setattr(xnode, "XmodNode", Stub)
    monkeypatch.setattr(xnode, "SingleThreadedExecutor", FlakyExecutor)
    real_logger = Stub.get_logger

    def logger(self):
        lg = real_logger(self)
        monkeypatch.setattr(lg, "warning", lambda msg, **kw: warnings.append(msg), raising=False)
        return lg

    monkeypatch.setattr(Stub, "get_logger", logger)
    assert xnode.main([]) == 0
    assert len(calls) == 4                       # went on after the failed take, stopped at shutdown
    assert warnings and "could not be taken" in warnings[0]
