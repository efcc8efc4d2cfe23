"""xmod_ros: the ROS 2 adapters of xmod (nodes, message conversion, bag tools) around `xmod_core`."""
