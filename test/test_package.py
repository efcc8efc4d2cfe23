"""The package builds with colcon as an ament_python package, installs both Python packages, its
launch and config files, and is found through the ament index. The core never imports ROS."""
import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROS_MODULES = {"rclpy", "std_msgs", "sensor_msgs", "geometry_msgs", "visualization_msgs", "builtin_interfaces",
               "message_filters", "cv_bridge", "sensor_msgs_py", "rosbag2_py", "launch", "launch_ros", "tf2_ros"}


@pytest.fixture(scope="module")
def install(tmp_path_factory) -> Path:
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon is not installed (it comes with `make setup`)")
    tmp = tmp_path_factory.mktemp("colcon")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([colcon, "--log-base", str(tmp / "log"), "build", "--base-paths", str(ROOT),
                           "--build-base", str(tmp / "build"), "--install-base", str(tmp / "install"),
                           "--packages-select", "xmod_ros"], cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 package finished" in proc.stdout
    return tmp / "install" / "xmod_ros"


def test_colcon_install_layout(install):
    share = install / "share" / "xmod_ros"
    assert (share / "package.xml").is_file()
    assert (share / "launch").is_dir() and (share / "config").is_dir()
    installed = sorted(str(p.relative_to(share / "config")) for p in (share / "config").rglob("*.yaml"))
    assert installed and installed == sorted(str(p.relative_to(ROOT / "config")) for p in (ROOT / "config").rglob("*.yaml"))
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "xmod_ros").is_file()
    assert (install / "lib" / "xmod_ros" / "xmod_sim").is_file()
    site = next((install / "lib").glob("python3*/site-packages"))
    assert (site / "xmod_core" / "kitti.py").is_file() and (site / "xmod_ros" / "__init__.py").is_file()


def test_ament_index_finds_the_package(install):
    code = ("from ament_index_python.packages import get_package_share_directory as g; "
            "import xmod_core.kitti, xmod_ros; print(g('xmod_ros')); print(xmod_core.kitti.__file__)")
    site = next((install / "lib").glob("python3*/site-packages"))
    env = {**os.environ, "AMENT_PREFIX_PATH": str(install), "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=install, capture_output=True, text=True, check=True)
    share, kitti = out.stdout.split()
    assert Path(share) == install / "share" / "xmod_ros"
    assert Path(kitti).is_relative_to(install)          # the installed copy, not the source tree


def test_package_xml_matches_setup():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == "xmod_ros"
    assert root.find("export/build_type").text == "ament_python"
    assert f'version="{root.findtext("version")}"' in (ROOT / "setup.py").read_text()


def test_core_never_imports_ros():
    offenders = []
    for path in (ROOT / "xmod_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ROS_MODULES]
    assert not offenders, offenders
