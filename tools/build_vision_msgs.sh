#!/usr/bin/env bash
# Builds the ROS 2 interface package vision_msgs (no PyPI wheel) from ../shared/third_party/vision_msgs
# with colcon and the PyPI ROS 2 Kilted wheels into .venv/ros_ws/install (build/ and log/ beside it;
# nothing is written into the source or the repository), and makes it importable from .venv:
#   .venv/.../site-packages/xmod_vision_msgs.pth   -> the install's python site-packages
#   .venv/.../site-packages/ros_vision_msgs.libs   -> the install's lib/ (a symlink; the wheels'
#       ros_wheels_bootstrapper puts every site-packages/ros_*.libs folder on LD_LIBRARY_PATH when
#       .venv/bin/python starts, which is how the typesupport libraries are found at run time)
# Skips, with one line, when the source is absent or `import vision_msgs.msg` already works (a full
# ROS 2 install). Idempotent: .venv/ros_ws/.stamp holds what was done for which source and script;
# a second run with both unchanged does nothing and prints nothing (rm -r .venv/ros_ws to redo it).
# XMOD_VISION_MSGS_SRC overrides the source folder (default ../shared/third_party/vision_msgs).
set -euo pipefail
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/.."
repo=$PWD
venv=$repo/.venv
py=$venv/bin/python
src=${XMOD_VISION_MSGS_SRC:-../shared/third_party/vision_msgs}
ws=$venv/ros_ws
stamp=$ws/.stamp
if [ -f "$src/package.xml" ]; then
  src=$(cd "$src" && pwd)
  want=$( (cat "$self"; cd "$src" && find . -type f ! -path './test/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)
else
  want="no source at $src"
fi
[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
mkdir -p "$ws"
exec 9>"$ws/.lock"                 # one build at a time (concurrent `make test` runs in this checkout)
flock 9
[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
if [ ! -f "$src/package.xml" ]; then
  echo "vision_msgs: not built (no source at $src)"
  echo "$want" > "$stamp"
  exit 0
fi
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pth=$site/xmod_vision_msgs.pth
libs=$site/ros_vision_msgs.libs
# our own earlier build must not count as "already importable"
rm -f "$pth" "$libs"
if "$py" -c 'import vision_msgs.msg' >/dev/null 2>&1; then
  echo "vision_msgs: not built (already importable: $("$py" -c 'import os, vision_msgs; print(os.path.dirname(vision_msgs.__file__))'))"
  echo "$want" > "$stamp"
  exit 0
fi

# The rosidl wheels' exported *__rosidl_generator_py targets name the include folders of the
# machine they were built on (/opt/python/cp3XX-cp3XX/include/python3.X and numpy's include under
# that prefix); CMake refuses to configure while those do not exist. Point them at this
# environment's Python and numpy headers (only those .cmake files inside .venv; idempotent).
pyinc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
npinc=$("$py" -c 'import numpy; print(numpy.get_include())')
[ -f "$pyinc/Python.h" ] || { echo "vision_msgs: no Python headers at $pyinc" >&2; exit 1; }
{ grep -rlE --include='*.cmake' '/opt/python/[^/;"]+/' "$venv/share" || true; } | while read -r f; do
  sed -i -E -e "s#/opt/python/[^/;\"]+/include/python3\.[0-9]+#$pyinc#g" \
            -e "s#/opt/python/[^/;\"]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$npinc#g" "$f"
done

log=$ws/build.log
rm -rf "$ws/build" "$ws/install" "$ws/log"
start=$SECONDS
# MAKEFLAGS: all cores; colcon's default adds -l<cores>, which runs one job at a time on a busy machine
if ! (export PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv" PYTHONNOUSERSITE=1 \
        MAKEFLAGS="${MAKEFLAGS:--j$(nproc)}"
      cd "$ws" && "$venv/bin/colcon" --log-base "$ws/log" build --base-paths "$src" \
        --build-base "$ws/build" --install-base "$ws/install" --merge-install \
        --event-handlers console_direct+ --cmake-args -DBUILD_TESTING=OFF \
        -DPython3_EXECUTABLE="$py" -DPython3_FIND_VIRTUALENV=ONLY
     ) >"$log" 2>&1; then
  tail -n 40 "$log"
  echo "vision_msgs: build failed (full log: $log)" >&2
  exit 1
fi
instsite=$(cd "$ws/install/lib" && ls -d python3*/site-packages)
[ -d "$ws/install/lib/$instsite/vision_msgs" ] || { echo "vision_msgs: no python package in $ws/install/lib/$instsite" >&2; exit 1; }
echo "$ws/install/lib/$instsite" > "$pth"
ln -sfn "$ws/install/lib" "$libs"
# a fresh interpreter: the bootstrapper puts ros_vision_msgs.libs on LD_LIBRARY_PATH at its start
if ! env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE "$py" -c 'from vision_msgs.msg import Detection2DArray as D
from rclpy.serialization import serialize_message; serialize_message(D())' >"$ws/check.log" 2>&1; then
  cat "$ws/check.log"
  echo "vision_msgs: built but does not import" >&2
  exit 1
fi
rm -f "$ws/check.log"
echo "$want" > "$stamp"
echo "vision_msgs: built in $((SECONDS - start)) s into .venv/ros_ws/install"
