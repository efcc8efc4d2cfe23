"""Fast DDS settings for large messages between processes on one machine.

Fast DDS's default shared-memory segment (512 KB) is smaller than one camera image (1.4 MB at
1242x375) or one LiDAR sweep (1.8 MB): such messages are then fragmented, and with the
best-effort sensor-data QoS whole frames are lost under load (measured here: 7 of 30 KITTI images
and 18 of 30 clouds arrived). Whether a message fits is decided by the *writer's* segment, so
every xmod process that publishes large messages (the node, the bag player) calls
:func:`use_large_message_profile` before ``rclpy.init``: with rmw_fastrtps (the default RMW), when
``FASTDDS_DEFAULT_PROFILES_FILE`` is not set and ``XMOD_DDS_TUNING`` is not ``0``, it points that
variable at a profile with a 32 MB shared-memory segment and 8 MB UDP socket buffers (30 of 30
arrived). A sensor driver in another process needs the same (export the variable, see README, "The ROS 2 node").
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<!-- written by xmod_ros.dds: large shared-memory segment and socket buffers for camera/LiDAR messages -->
<dds xmlns="http://www.eprosima.com">
  <profiles>
    <transport_descriptors>
      <transport_descriptor>
        <transport_id>xmod_shm</transport_id>
        <type>SHM</type>
        <segment_size>33554432</segment_size>
        <maxMessageSize>16777216</maxMessageSize>
      </transport_descriptor>
      <transport_descriptor>
        <transport_id>xmod_udp</transport_id>
        <type>UDPv4</type>
        <sendBufferSize>8388608</sendBufferSize>
        <receiveBufferSize>8388608</receiveBufferSize>
      </transport_descriptor>
    </transport_descriptors>
    <participant profile_name="xmod_large_messages" is_default_profile="true">
      <rtps>
        <userTransports>
          <transport_id>xmod_shm</transport_id>
          <transport_id>xmod_udp</transport_id>
        </userTransports>
        <useBuiltinTransports>false</useBuiltinTransports>
      </rtps>
    </participant>
  </profiles>
</dds>
"""


def profile_path() -> Path:
    return Path(tempfile.gettempdir()) / f"xmod_fastdds_{os.getuid() if hasattr(os, 'getuid') else 0}.xml"


def use_large_message_profile(env: dict | None = None) -> str | None:
    """Set FASTDDS_DEFAULT_PROFILES_FILE in ``env`` (default: os.environ) to the large-message
    profile unless it is set already, tuning is off or another RMW is selected. Returns the
    profile path in use (None when untouched)."""
    env = os.environ if env is None else env
    if env.get("XMOD_DDS_TUNING", "1") == "0" or env.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return env.get("FASTDDS_DEFAULT_PROFILES_FILE")
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") not in ("rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp"):
        return None
    path = profile_path()
    try:
        if not path.is_file() or path.read_text() != PROFILE:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(PROFILE)
            os.replace(tmp, path)
    except OSError:
        return None
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(path)
    return str(path)
