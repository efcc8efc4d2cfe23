"""xmod_node as a managed (lifecycle) node (``-p lifecycle:=true``) in its own process, driven
from this process through the real lifecycle_msgs services ~/change_state and ~/get_state:
configure loads calibration and students but subscribes to nothing, activate subscribes and
publishes, deactivate unsubscribes and publishes nothing more, activate again works, cleanup
frees the models and the outputs, the shutdown transition ends the process with status 0. A
failed configure (no camera_info, then a missing checkpoint) returns failure, logs the reason and
leaves the node unconfigured and alive; fixing the parameter and configuring again works; SIGTERM
exits 0. `lifecycle` is read from -p and params files; the plain node stays the default."""
import signal
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")
lifecycle_msgs = pytest.importorskip("lifecycle_msgs")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_helpers as H  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402

IMAGE_TOPIC, CLOUD_TOPIC = H.IMAGE_TOPIC, H.CLOUD_TOPIC
base_params, outputs_at, pair, publish_pair = H.base_params, H.outputs_at, H.pair, H.publish_pair


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return H.node_assets(tmp_path_factory.mktemp("xmod_lifecycle"))


@pytest.fixture(scope="module")
def probe():
    p = H.Probe(name="xmod_lifecycle_probe")
    yield p
    p.close()


class Manager:
    """A lifecycle client of /xmod_node, as `ros2 lifecycle set/get` would be."""

    def __init__(self, probe, node_proc):
        self.probe, self.node_proc = probe, node_proc
        self.change = probe.node.create_client(ChangeState, "/xmod_node/change_state")
        self.get = probe.node.create_client(GetState, "/xmod_node/get_state")
        assert self.change.wait_for_service(60) and self.get.wait_for_service(10), node_proc.output()

    def _call(self, client, request, timeout=60.0, action=None):
        fut = client.call_async(request)
        assert self.probe.wait_until(fut.done, timeout, 0.05, action), self.node_proc.output()
        return fut.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def set(self, transition: int, action=None) -> bool:
        """Request a transition (running ``action``, e.g. publishing camera_info, while waiting)."""
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition)), action=action).success

    def destroy(self):
        self.probe.node.destroy_client(self.change)
        self.probe.node.destroy_client(self.get)


node_subscriptions = H.node_subscriptions


def node_publishers(probe) -> set:
    try:
        return set(dict(probe.node.get_publisher_names_and_types_by_node("xmod_node", "/")))
    except Exception:  # noqa: BLE001
        return set()


def outputs_for(probe, s, timeout=30.0) -> bool:
    im, cl = pair(s)
    return probe.wait_until(lambda: outputs_at(probe, "instances", s), timeout, 0.3, lambda: publish_pair(probe, im, cl))


def test_transitions_drive_the_pipeline(assets, probe):
    probe.clear()
    node = H.NodeProcess(base_params(assets, calibration=str(assets["calib"]), lifecycle=True), assets["dir"] / "lc.log")
    mgr = None
    try:
        mgr = Manager(probe, node)
        assert mgr.state() == "unconfigured"
        assert "managed node, unconfigured" in node.output()
        # configure: calibration and students loaded, outputs exist, inputs not subscribed yet
        assert mgr.set(Transition.TRANSITION_CONFIGURE), node.output()
        assert mgr.state() == "inactive"
        assert node.wait_for_output("configured: fused mode on cpu; calibration: KITTI calibration", 5)
        assert probe.wait_until(lambda: "/xmod_node/instances" in node_publishers(probe), 10), node_publishers(probe)
        assert not {IMAGE_TOPIC, CLOUD_TOPIC} & node_subscriptions(probe)
        # activate: subscribed, a pair gives outputs
        assert mgr.set(Transition.TRANSITION_ACTIVATE) and mgr.state() == "active"
        assert probe.wait_for_subscribers(20), node.output()
        assert probe.wait_until(lambda: {IMAGE_TOPIC, CLOUD_TOPIC} <= node_subscriptions(probe), 10)
        assert outputs_for(probe, 7000.0), node.output()
        assert probe.wait_until(lambda: probe.latest_status().get("lifecycle_state") == "active", 5)
        # deactivate: unsubscribed, inputs give nothing
        assert mgr.set(Transition.TRANSITION_DEACTIVATE) and mgr.state() == "inactive"
        assert node.wait_for_output("inactive: inputs unsubscribed", 5)
        assert probe.wait_until(lambda: not {IMAGE_TOPIC, CLOUD_TOPIC} & node_subscriptions(probe)
                                and probe.pub_image.get_subscription_count() == 0
                                and probe.pub_cloud.get_subscription_count() == 0, 10)
        s = 7010.0
        assert not outputs_for(probe, s, timeout=1.5)
        # activate again: outputs again
        assert mgr.set(Transition.TRANSITION_ACTIVATE) and mgr.state() == "active"
        assert probe.wait_for_subscribers(20)
        assert outputs_for(probe, 7020.0), node.output()
        assert not outputs_at(probe, "instances", s)             # nothing of the inactive time came out
        # deactivate, cleanup: models and outputs freed
        assert mgr.set(Transition.TRANSITION_DEACTIVATE)
        assert mgr.set(Transition.TRANSITION_CLEANUP) and mgr.state() == "unconfigured"
        assert node.wait_for_output("unconfigured: models freed", 5)
        assert probe.wait_until(lambda: "/xmod_node/instances" not in node_publishers(probe), 10)
        assert probe.wait_until(lambda: probe.latest_status().get("lifecycle_state") == "unconfigured"
                                and probe.latest_status().get("device") == "", 5), probe.latest_status()
        # shutdown transition: the process ends, status 0
        assert mgr.set(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN), node.output()
        assert node.proc.wait(20) == 0, node.output()
        assert "shut down (from unconfigured)" in node.output()
        assert "Traceback" not in node.output() and "never retrieved" not in node.output()
    finally:
        if mgr is not None:
            mgr.destroy()
        node.stop()


def test_failed_configure_stays_unconfigured_and_alive(assets, probe):
    """rgb mode from camera_info: configure fails without camera_info, then (camera_info
    published) on the missing checkpoint; both logged, the node unconfigured and alive. A fixed
    parameter is read by the next configure; SIGTERM while active exits 0."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    from xmod_core.kitti import load_calib
    from xmod_ros.bag import camera_info_msg
    info = camera_info_msg(load_calib(assets["calib"]), 0, H.CAM)
    probe.clear()
    node = H.NodeProcess(base_params(assets, mode="rgb", calibration_timeout=1.5, checkpoint_rgb="/nope/student_rgb.pt",
                                     lifecycle=True), assets["dir"] / "lc_fail.log")
    mgr = None
    try:
        mgr = Manager(probe, node)
        assert not mgr.set(Transition.TRANSITION_CONFIGURE)
        assert mgr.state() == "unconfigured" and node.alive()
        assert node.wait_for_output("cannot configure: no camera_info received on "
                                    "/kitti/camera_color_left/camera_info within 1.5 s", 5), node.output()
        assert not mgr.set(Transition.TRANSITION_CONFIGURE, action=lambda: probe.pub_info.publish(info))
        assert mgr.state() == "unconfigured" and node.alive()
        # the plain node's message
        assert node.wait_for_output("cannot configure: checkpoint_rgb: checkpoint /nope/student_rgb.pt not found", 5)
        assert "/xmod_node/instances" not in node_publishers(probe)
        # parameters set while unconfigured are read by the next configure
        cli = probe.node.create_client(SetParameters, "/xmod_node/set_parameters")
        assert cli.wait_for_service(10)
        value = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(assets["rgb"]))
        fut = cli.call_async(SetParameters.Request(parameters=[Parameter(name="checkpoint_rgb", value=value)]))
        assert probe.wait_until(fut.done, 20) and fut.result().results[0].successful
        probe.node.destroy_client(cli)
        assert mgr.set(Transition.TRANSITION_CONFIGURE, action=lambda: probe.pub_info.publish(info)), node.output()
        assert "calibration: camera_info on /kitti/camera_color_left/camera_info" in node.output()
        assert mgr.set(Transition.TRANSITION_ACTIVATE) and mgr.state() == "active"
        assert probe.wait_for_subscribers(20, cloud=False)
        assert IMAGE_TOPIC in node_subscriptions(probe) and CLOUD_TOPIC not in node_subscriptions(probe)
        # SIGTERM while active: clean exit
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(20) == 0, node.output()
        assert "Traceback" not in node.output() and "never retrieved" not in node.output()
    finally:
        if mgr is not None:
            mgr.destroy()
        node.stop()


def test_lifecycle_is_read_from_the_command_line_and_params_files(tmp_path):
    """main() picks the node class from `lifecycle` before building the node: -p, a params file,
    absent (the plain node, the default); a non-bool value is a ParameterException (exit 2)."""
    import rclpy
    from rclpy.exceptions import ParameterException

    from xmod_ros.node import lifecycle_requested
    params = tmp_path / "p.yaml"
    params.write_text("xmod_node:\n  ros__parameters:\n    lifecycle: true\n")
    cases = {(): False, ("-p", "lifecycle:=true"): True, ("-p", "lifecycle:=false"): False,
             ("--params-file", str(params)): True, ("-p", "lifecycle:=maybe"): ParameterException}
    for args, want in cases.items():
        ctx = rclpy.Context()
        rclpy.init(args=["xmod_node", "--ros-args", *args], context=ctx)
        try:
            if want is ParameterException:
                with pytest.raises(ParameterException, match="lifecycle"):
                    lifecycle_requested(ctx)
            else:
                assert lifecycle_requested(ctx) is want, args
        finally:
            ctx.try_shutdown()


def test_the_lifecycle_probe_node_offers_no_service(monkeypatch):
    """The short-lived probe that reads `lifecycle` starts no service (not even rclpy's
    ~/get_type_description, whose teardown right after creation once crashed a refusing node)."""
    import rclpy
    from rclpy.node import Node

    import xmod_ros.node as xnode
    seen = []

    class Recording(Node):
        def destroy_node(self):
            seen.append([s.srv_name for s in self.services])
            return super().destroy_node()

    monkeypatch.setattr(xnode, "Node", Recording)
    ctx = rclpy.Context()
    rclpy.init(args=["xmod_node", "--ros-args", "-p", "lifecycle:=true"], context=ctx)
    try:
        assert xnode.lifecycle_requested(ctx) is True
    finally:
        ctx.try_shutdown()
    assert seen == [[]]
