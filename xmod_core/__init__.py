"""Pure-Python core of xmod_ros (no ROS imports): data readers, LiDAR front view, models."""
