"""Start xmod_node with config/xmod.yaml; with bag:=PATH also replay that bag.

    ros2 launch xmod_ros xmod.launch.py bag:=out/demo/input_bag mode:=fused device:=auto rate:=1.0

Without a full ROS 2 install (no `launch`/`launch_ros`), `python -m xmod_ros.launch` takes the
same arguments (the shared definition is xmod_ros/launch_spec.py; a test keeps both in step).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node


def generate_launch_description():
    config = os.path.join(get_package_share_directory("xmod_ros"), "config", "xmod.yaml")
    arguments = [
        DeclareLaunchArgument("bag", default_value="",
                              description="ROS 2 bag to replay (e.g. from `python -m xmod_ros.bag from-kitti`); "
                                          "empty: live sensors"),
        DeclareLaunchArgument("mode", default_value="fused", description="rgb (camera only), lidar (LiDAR only) or fused"),
        DeclareLaunchArgument("device", default_value="auto", description="auto (CUDA when present), cpu or cuda"),
        DeclareLaunchArgument("instances", default_value="slots",
                              description="slots (the students' instances) or hybrid (LiDAR clusters the students call objects)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="bag replay speed factor"),
    ]
    node = Node(
        package="xmod_ros",
        executable="xmod_node",
        name="xmod_node",
        output="screen",
        parameters=[config, {"mode": LaunchConfiguration("mode"), "device": LaunchConfiguration("device"),
                            "instances": LaunchConfiguration("instances")}],
    )
    player = Node(
        package="xmod_ros",
        executable="xmod_bag",
        name="xmod_bag_player",
        output="screen",
        arguments=["play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate"), "--wait-subscribers", "30"],
        condition=IfCondition(PythonExpression(["'", LaunchConfiguration("bag"), "' != ''"])),
    )
    return LaunchDescription(arguments + [node, player])
