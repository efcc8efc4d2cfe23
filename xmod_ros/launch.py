"""The launcher for pip installs (no ``ros2 launch``): what ``launch/xmod.launch.py`` does, with
the same arguments.

    python -m xmod_ros.launch [bag:=PATH] [mode:=fused] [device:=auto] [rate:=1.0] [--param NAME:=VALUE ...] [--dry-run]

Starts ``xmod_node`` with config/xmod.yaml (and ``mode``/``device`` as parameters) and, with
``bag:=``, the bag player (``xmod_bag play BAG --rate R``). Runs until Ctrl-C or until the node
exits. Without tf2_ros (pip installs) the node cannot read TF, so when the configuration has no
``calibration`` the LiDAR-to-camera transform is read from the bag's /tf_static and passed as
``lidar_to_camera``. ``--param`` adds node parameter overrides; ``--dry-run`` prints the commands.
Ctrl-C (or SIGTERM) is passed on to both; a child still running 10 s later is killed, and on Linux
the children also end when the launcher itself is killed.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from . import launch_spec as spec

MODULES = {spec.NODE_EXECUTABLE: "xmod_ros.node", spec.PLAYER_EXECUTABLE: "xmod_ros.bag"}


def params_file() -> Path:
    """config/xmod.yaml from the installed share directory, else from the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory
        p = Path(get_package_share_directory(spec.PACKAGE)).joinpath(*spec.PARAMS_FILE)
        if p.is_file():
            return p
    except Exception:  # noqa: BLE001 - not in an ament index
        pass
    return Path(__file__).resolve().parents[1].joinpath(*spec.PARAMS_FILE)


def executable(name: str) -> list[str]:
    """The console script ``name`` (next to this Python, on PATH, or in a colcon install's
    lib/xmod_ros), else ``python -m`` its module."""
    here = Path(sys.executable).parent
    for d in (here, here.parent / "lib" / spec.PACKAGE):
        if (d / name).is_file() and os.access(d / name, os.X_OK):
            return [str(d / name)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", MODULES[name]]


def parse_args(argv) -> tuple[dict, list[str], bool]:
    args = {k: v[0] for k, v in spec.ARGUMENTS.items()}
    params, dry = [], False
    it = iter(argv)
    for a in it:
        if a == "--dry-run":
            dry = True
        elif a == "--param":
            params.append(next(it, ""))
        elif a in ("-h", "--help"):
            raise SystemExit(__doc__ + "\narguments:\n" + "\n".join(f"  {k}:={d!r:10} {t}" for k, (d, t) in spec.ARGUMENTS.items()))
        elif ":=" in a:
            k, v = a.split(":=", 1)
            if k not in spec.ARGUMENTS:
                raise SystemExit(f"unknown argument {k!r}; arguments: {', '.join(spec.ARGUMENTS)}")
            args[k] = v
        else:
            raise SystemExit(f"expected NAME:=VALUE, --param NAME:=VALUE or --dry-run, got {a!r}")
    for p in params:
        if ":=" not in p:
            raise SystemExit(f"--param expects NAME:=VALUE, got {p!r}")
    return args, params, dry


def _tf2_available() -> bool:
    try:
        import tf2_ros  # noqa: F401
        return True
    except ImportError:
        return False


def bag_extrinsics(bag, config: dict) -> list[float] | None:
    """16 floats mapping the bag's LiDAR frame into its camera_info frame, from /tf_static; None
    when the bag does not have what is needed."""
    from .bag import read_messages, static_transforms
    info_topic, cloud_topic = config.get("camera_info_topic"), config.get("cloud_topic")
    frames = {}
    for topic, _, msg in read_messages(bag, {info_topic, cloud_topic}):
        frames.setdefault(topic, msg.header.frame_id)
        if len(frames) == 2:
            break
    if len(frames) < 2:
        return None
    try:
        T = static_transforms(bag).lookup(frames[info_topic], frames[cloud_topic])
    except LookupError:
        return None
    return [float(v) for v in T.reshape(-1)]


def commands(args: dict, params: list[str] = ()) -> dict:
    """{'node': argv, 'player': argv or None} for the launch arguments (missing ones: their defaults)."""
    args = {k: d for k, (d, _) in spec.ARGUMENTS.items()} | dict(args)
    cfg_path = params_file()
    node = executable(spec.NODE_EXECUTABLE) + ["--ros-args", "-r", f"__node:={spec.NODE_NAME}",
                                               "--params-file", str(cfg_path)]
    for k in spec.NODE_PARAMETERS:
        node += ["-p", f"{k}:={args[k]}"]
    overrides = {p.split(":=", 1)[0] for p in params}
    if args["bag"] and not _tf2_available() and not {"calibration", "lidar_to_camera"} & overrides:
        config = yaml.safe_load(cfg_path.read_text())[spec.NODE_NAME]["ros__parameters"]
        if not config.get("calibration") and not config.get("lidar_to_camera"):
            T = bag_extrinsics(args["bag"], config)
            if T is not None:
                node += ["-p", "lidar_to_camera:=[" + ",".join(repr(v) for v in T) + "]"]
    for p in params:
        node += ["-p", p]
    player = None
    if args["bag"]:
        player = executable(spec.PLAYER_EXECUTABLE) + [a.format(**args) for a in spec.PLAYER_ARGUMENTS] \
            + ["--ros-args", "-r", f"__node:={spec.PLAYER_NAME}"]
    return {"node": node, "player": player}


STOP_GRACE_S = 10.0       # after Ctrl-C: how long the children may take to exit before they are killed


def parent_death_signal():
    """A `preexec_fn` for the children on Linux (None elsewhere): SIGTERM when the launcher dies,
    even by SIGKILL, so the node and the player never outlive it. prctl is looked up here, in the
    launcher, so the child only calls it between fork and exec."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()
    PR_SET_PDEATHSIG = 1

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:                  # the launcher died before the call: nothing would signal
            os._exit(1)
    return child


def main(argv=None) -> int:
    args, params, dry = parse_args(sys.argv[1:] if argv is None else argv)
    if args["bag"] and not Path(args["bag"]).exists():
        print(f"xmod_ros.launch: bag {args['bag']} not found", file=sys.stderr)
        return 2
    cmds = commands(args, params)
    if dry:
        for k, c in cmds.items():
            if c:
                print(f"{k}: {subprocess.list2cmdline(c)}")
        return 0
    stopping, procs, signalled = [], {}, set()      # when Ctrl-C / SIGTERM came; the children; those told

    def stop(*_):
        if not stopping:
            stopping.append(time.monotonic())
        for name, p in procs.items():               # each child is told once
            if name not in signalled and p.poll() is None:
                signalled.add(name)
                p.send_signal(signal.SIGINT)

    # handlers, not KeyboardInterrupt: an exception raised at an arbitrary point (inside Popen's
    # own bookkeeping) could leave the children unsignalled and the launcher waiting
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    pre = parent_death_signal()
    procs["node"] = subprocess.Popen(cmds["node"], preexec_fn=pre)
    if cmds["player"]:
        procs["player"] = subprocess.Popen(cmds["player"], preexec_fn=pre)
    if stopping:                                    # Ctrl-C while they started
        stop()
    try:
        while procs["node"].poll() is None and not (stopping and time.monotonic() - stopping[0] > STOP_GRACE_S):
            time.sleep(0.2)
    finally:
        stop()                                      # the player too when the node ended by itself
        deadline = stopping[0] + STOP_GRACE_S       # one grace period for all, from the first stop
        for p in procs.values():
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return procs["node"].returncode or 0


if __name__ == "__main__":
    sys.exit(main())
