"""What launching xmod means, as data shared by the two launchers: ``launch/xmod.launch.py`` (for
``ros2 launch``, needs the ``launch`` and ``launch_ros`` packages of a full ROS 2 install) and
``python -m xmod_ros.launch`` (pip installs). A test checks that the launch file says the same."""

PACKAGE = "xmod_ros"
NODE_EXECUTABLE = "xmod_node"           # console script: xmod_ros.node:main
NODE_NAME = "xmod_node"
PLAYER_EXECUTABLE = "xmod_bag"          # console script: xmod_ros.bag:main
PLAYER_NAME = "xmod_bag_player"
PARAMS_FILE = ("config", "xmod.yaml")   # under share/xmod_ros (or the source tree)

# launch argument: (default, description)
ARGUMENTS = {
    "bag": ("", "ROS 2 bag to replay (e.g. from `python -m xmod_ros.bag from-kitti`); empty: live sensors"),
    "mode": ("fused", "rgb (camera only), lidar (LiDAR only) or fused"),
    "device": ("auto", "auto (CUDA when present), cpu or cuda"),
    "instances": ("slots", "slots (the students' instances) or hybrid (LiDAR clusters the students call objects)"),
    "rate": ("1.0", "bag replay speed factor"),
}
# launch arguments passed to the node as parameters (same name)
NODE_PARAMETERS = ("mode", "device", "instances")
# the player's command line; {name} is a launch argument
PLAYER_ARGUMENTS = ("play", "{bag}", "--rate", "{rate}", "--wait-subscribers", "30")
