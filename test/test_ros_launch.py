"""The two launchers say the same thing: launch/xmod.launch.py (run here against recording stubs
of `launch`/`launch_ros`, which are not installable from PyPI) and `python -m xmod_ros.launch`
name the same executables, node name, parameters file, parameters and arguments as
xmod_ros/launch_spec.py; config/xmod.yaml holds the node's declared defaults; and the pip launcher
replays a bag through the node end to end."""
import importlib.util
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

pytest.importorskip("rclpy")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_helpers as H  # noqa: E402

from xmod_ros import launch as pip_launch  # noqa: E402
from xmod_ros import launch_spec as spec  # noqa: E402
from xmod_ros.node import PARAMETERS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class Rec:
    """Records how a launch action or substitution was constructed."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f"{type(self).__name__}{self.args}"


def load_launch_file_with_stubs():
    names = {"launch": ["LaunchDescription"], "launch.actions": ["DeclareLaunchArgument", "ExecuteProcess"],
             "launch.conditions": ["IfCondition", "UnlessCondition"],
             "launch.substitutions": ["LaunchConfiguration", "PythonExpression"], "launch_ros": [],
             "launch_ros.actions": ["Node"]}
    saved = {k: sys.modules.get(k) for k in [*names, "ament_index_python.packages"]}
    try:
        for mod, classes in names.items():
            m = types.ModuleType(mod)
            for c in classes:
                setattr(m, c, type(c, (Rec,), {}))
            sys.modules[mod] = m
        share = types.ModuleType("ament_index_python.packages")
        share.get_package_share_directory = lambda pkg: f"/share/{pkg}"
        sys.modules["ament_index_python.packages"] = share
        specification = importlib.util.spec_from_file_location("xmod_launch_file", ROOT / "launch" / "xmod.launch.py")
        module = importlib.util.module_from_spec(specification)
        specification.loader.exec_module(module)
        return module.generate_launch_description()
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _sub(x):
    """A recorded substitution as text: LaunchConfiguration('bag') -> '{bag}'."""
    if type(x).__name__ == "LaunchConfiguration":
        return "{" + x.args[0] + "}"
    return x


def test_launch_file_matches_the_shared_spec():
    desc = load_launch_file_with_stubs()
    actions = desc.args[0]
    declared = {a.args[0]: (a.kwargs["default_value"], a.kwargs["description"])
                for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    assert declared == spec.ARGUMENTS
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    node = next(n for n in nodes if n.kwargs["executable"] == spec.NODE_EXECUTABLE)
    assert (node.kwargs["package"], node.kwargs["name"]) == (spec.PACKAGE, spec.NODE_NAME)
    params_file, overrides = node.kwargs["parameters"]
    assert params_file == "/share/xmod_ros/" + "/".join(spec.PARAMS_FILE)
    assert {k: _sub(v) for k, v in overrides.items()} == {k: "{" + k + "}" for k in spec.NODE_PARAMETERS}
    player = next(n for n in nodes if n.kwargs["executable"] == spec.PLAYER_EXECUTABLE)
    assert (player.kwargs["package"], player.kwargs["name"]) == (spec.PACKAGE, spec.PLAYER_NAME)
    assert tuple(_sub(a) for a in player.kwargs["arguments"]) == spec.PLAYER_ARGUMENTS
    cond = player.kwargs["condition"]                         # played only when bag is not empty
    assert type(cond).__name__ == "IfCondition" and "{bag}" in [_sub(x) for x in cond.args[0].args[0]]
    assert len(nodes) == 2


def test_pip_launcher_names_the_same_things(tmp_path):
    bagdir = tmp_path / "some_bag"
    bagdir.mkdir()
    argv = [sys.executable, "-m", "xmod_ros.launch", f"bag:={bagdir}", "mode:=rgb", "device:=cpu", "rate:=2.5",
            "--param", "calibration:=/x", "--dry-run"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
    node, player = lines["node"].split(), lines["player"].split()
    assert Path(node[0]).name == spec.NODE_EXECUTABLE or node[1:3] == ["-m", "xmod_ros.node"]
    assert node[node.index("--params-file") + 1] == str(ROOT.joinpath(*spec.PARAMS_FILE))
    assert f"__node:={spec.NODE_NAME}" in node and "mode:=rgb" in node and "device:=cpu" in node
    assert "calibration:=/x" in node
    assert Path(player[0]).name == spec.PLAYER_EXECUTABLE or player[1:3] == ["-m", "xmod_ros.bag"]
    i = player.index("play")
    assert player[i:i + 6] == ["play", str(bagdir), "--rate", "2.5", "--wait-subscribers", "30"]
    assert f"__node:={spec.PLAYER_NAME}" in player
    no_bag = pip_launch.commands({k: v[0] for k, v in spec.ARGUMENTS.items()})
    assert no_bag["player"] is None and "mode:=fused" in no_bag["node"] and "device:=auto" in no_bag["node"]
    bad = subprocess.run([sys.executable, "-m", "xmod_ros.launch", "speed:=3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown argument 'speed'" in bad.stderr


def test_config_holds_the_declared_defaults():
    cfg = yaml.safe_load((ROOT / "config" / "xmod.yaml").read_text())
    params = cfg[spec.NODE_NAME]["ros__parameters"]
    unset = {k for k, (d, _, _) in PARAMETERS.items() if d == []}      # an empty list cannot be written in YAML
    assert set(params) == set(PARAMETERS) - unset
    for k, v in params.items():
        assert v == PARAMETERS[k][0] and type(v) is type(PARAMETERS[k][0]), k
    assert unset == {"lidar_to_camera"} and "lidar_to_camera" in (ROOT / "config" / "xmod.yaml").read_text()


def test_node_parameters_make_the_predictor_config():
    """The declared defaults give the Predictor's defaults where the two name the same setting (a
    negative min_score: each student's own threshold, None); a set min_score applies as given."""
    from xmod_core.predictor import PredictorConfig
    from xmod_ros.node import predictor_config
    p = {k: d for k, (d, _, _) in PARAMETERS.items()}
    cfg = predictor_config(p, "fused", "a.pt", "b.pt")
    assert cfg.min_score is None and cfg.min_score == PredictorConfig.min_score
    assert (cfg.mode, cfg.ckpt_2d, cfg.ckpt_3d) == ("fused", "a.pt", "b.pt")
    assert predictor_config(p | {"min_score": 0.7}, "lidar", "a.pt", "b.pt").min_score == 0.7
    assert predictor_config(p | {"min_score": 0.0}, "lidar", "a.pt", "b.pt").min_score == 0.0
    assert cfg.fused_min_score_3d is None and cfg.fused_min_score_3d == PredictorConfig.fused_min_score_3d
    assert predictor_config(p | {"fused_min_score_3d": 0.55}, "fused", "a.pt", "b.pt").fused_min_score_3d == 0.55
    assert (cfg.rescue_iou, cfg.rescue_min_score) == (0.5, 0.3)                         # on by default
    other = predictor_config(p | {"rescue_iou": 0.0, "rescue_min_score": 0.45}, "lidar", "a.pt", "b.pt")
    assert (other.rescue_iou, other.rescue_min_score) == (0.0, 0.45)
    assert (cfg.fusion_agreement, cfg.fusion_foreground) == (PredictorConfig.fusion_agreement,
                                                            PredictorConfig.fusion_foreground)
    other = predictor_config(p | {"fusion_agreement": "iou" if cfg.fusion_agreement == "foreground" else "foreground",
                                  "fusion_foreground": 0.65}, "fused", "a.pt", "b.pt")
    assert other.fusion_agreement != cfg.fusion_agreement and other.fusion_foreground == 0.65
    assert cfg.grid_depth_gate_m == PredictorConfig.grid_depth_gate_m == 0.0          # the gate is an option, off
    assert predictor_config(p | {"grid_depth_gate": 2.0}, "lidar", "a.pt", "b.pt").grid_depth_gate_m == 2.0
    assert cfg.part_voxel_m == PredictorConfig.part_voxel_m > 0                         # the part trim is on by default
    assert predictor_config(p | {"part_voxel": 0.0}, "lidar", "a.pt", "b.pt").part_voxel_m == 0.0
    assert cfg.part_road and not predictor_config(p | {"part_road": False}, "lidar", "a.pt", "b.pt").part_road


def test_parameters_are_documented_and_console_scripts_registered():
    doc = (ROOT / "docs" / "node.md").read_text()
    for k in PARAMETERS:
        assert f"| `{k}` |" in doc, k
    from importlib.metadata import entry_points
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    assert scripts.get(spec.NODE_EXECUTABLE) == "xmod_ros.node:main"
    assert scripts.get(spec.PLAYER_EXECUTABLE) == "xmod_ros.bag:main"
    assert "xmod_node = xmod_ros.node:main" in (ROOT / "setup.py").read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the launcher's children from /proc")
def test_pip_launcher_replays_a_bag_through_the_node(tmp_path):
    """bag:= on a pip install: camera_info and the extrinsics come from the bag (no tf2_ros)."""
    from conftest import make_tiny_drive

    from xmod_ros.bag import from_kitti
    drive = make_tiny_drive(tmp_path / "d", frames=8)
    bag = from_kitti(drive, tmp_path / "bag", progress=False)
    rgb, lidar = H.export_tiny_students(tmp_path / "models")
    probe = H.Probe()
    log = open(tmp_path / "launch.log", "w")
    # rate 0.25: the 8 frames take 3.2 s, so a node whose first inference is slow on a loaded
    # machine still sees several of them (at rate 1 a CI run once got fewer than 3 outputs)
    proc = subprocess.Popen([sys.executable, "-m", "xmod_ros.launch", f"bag:={bag}", "rate:=0.25",
                             "--param", f"checkpoint_rgb:={rgb}", "--param", f"checkpoint_lidar:={lidar}",
                             "--param", "status_period:=0.5"],
                            stdout=log, stderr=subprocess.STDOUT, env=H.ros_env(), cwd=tmp_path,
                            start_new_session=True)
    try:
        ok = probe.wait_until(lambda: len(probe.outputs("instances")) >= 2 and probe.outputs("clusters"), 90)
        text = (tmp_path / "launch.log").read_text()
        assert ok, text
        assert "lidar_to_camera" in text and "camera_info on /kitti/camera_color_left/camera_info" in text
        stamps = [H.stamp_of(m) for m in probe.outputs("instances")]
        assert all(abs(s - round(s * 10) / 10) < 1e-6 for s in stamps)          # the bag's 10 Hz stamps
        children = child_pids(proc.pid)
        assert len(children) == 2, children                                     # the node and the player
    finally:
        proc.send_signal(2)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)                  # the launcher and whatever it started: no node outlives the test
            rc = None
        probe.close()
        log.close()
    assert rc == 0, (tmp_path / "launch.log").read_text()
    assert not [p for p in children if alive(p)]


def child_pids(pid: int) -> list:
    """The direct children of a process (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def alive(pid: int) -> bool:
    """Running (not a zombie) per /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal and /proc are Linux's")
def test_launcher_children_end_when_the_launcher_is_killed(tmp_path):
    """The node and the player end with the launcher, even when it is killed outright (SIGKILL
    runs no handler: the children's parent-death signal does it)."""
    from conftest import make_tiny_drive

    from xmod_ros.bag import from_kitti
    drive = make_tiny_drive(tmp_path / "d", frames=8)
    bag = from_kitti(drive, tmp_path / "bag", progress=False)
    rgb, lidar = H.export_tiny_students(tmp_path / "models")
    log = open(tmp_path / "launch.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "xmod_ros.launch", f"bag:={bag}", "rate:=0.1",
                             "--param", f"checkpoint_rgb:={rgb}", "--param", f"checkpoint_lidar:={lidar}"],
                            stdout=log, stderr=subprocess.STDOUT, env=H.ros_env(), cwd=tmp_path,
                            start_new_session=True)
    children = []
    try:
        deadline = time.monotonic() + 60
        while len(children) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            children = child_pids(proc.pid)
        assert len(children) == 2, (tmp_path / "launch.log").read_text()
        time.sleep(2.0)                                                          # both past their imports
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 30
        while [p for p in children if alive(p)] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in children if alive(p)], (tmp_path / "launch.log").read_text()
    finally:
        for p in children:
            if alive(p):
                os.kill(p, 9)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        log.close()
