#!/usr/bin/env bash
# Builds the workspace for the real `ros2 launch` test (tests/test_ros2_launch.py), without a ROS
# install: colcon from pip in the project's .venv, the sources of ../shared/ros2-src (launch,
# launch_ros, ros2cli, composition_interfaces, tf2_msgs, hri_msgs) as an underlay, then this
# package as an overlay, all under .cache/ros2_ws (outside git).
#
#   bash .ci/ros2_workspace.sh            # underlay when out of date (cached), overlay always
#   bash .ci/ros2_workspace.sh --overlay  # only the overlay (seconds; the underlay must exist)
#   source .cache/ros2_ws/overlay/install/setup.bash && ros2 launch diffhpe_ros lifter.launch.py
#
# Idempotent: the underlay is rebuilt only when the tarballs, requirements-colcon.txt or this
# script change (a stamp holds their hash); the overlay (a Python package: seconds) every time, so
# that the installed package is the working tree's. Needs `make venv`, cmake and g++.
# ROS2_SRC_DIR overrides where the tarballs are (default: ../shared/ros2-src beside the clone).
set -euo pipefail
OVERLAY_ONLY=false
case "${1:-}" in
  "") ;;
  --overlay) OVERLAY_ONLY=true ;;
  *) echo "usage: $0 [--overlay]" >&2; exit 2 ;;
esac
REPO=$(cd "$(dirname "$0")/.." && pwd)
SRC_DIR=${ROS2_SRC_DIR:-$REPO/../shared/ros2-src}
VENV=$REPO/.venv
PY=$VENV/bin/python
WS=$REPO/.cache/ros2_ws
TARBALLS=(ros2-launch-min-src.tar.gz ros2-msgs-src.tar.gz)
COLCON_REQ=$REPO/requirements-colcon.txt

log() { echo "[ros2_workspace] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -x "$PY" ] || die "$VENV missing: run 'make venv' first"

# hri_msgs in the tarball is the ROS 1 (catkin) branch. The messages this package publishes are
# ported here as the ROS 2 branch has them: `std_msgs/Header` for `Header`, ament build files
# (rosidl_default_generators, member of rosidl_interface_packages). Only those: other ROS 1
# definitions do not parse under ROS 2's naming rules (AudioFeatures' field `ZCR`), and each
# message costs build time.
HRI_MSGS=(IdsList)
port_hri_msgs() {
  local dir=$1 msgs="" m
  for m in "${HRI_MSGS[@]}"; do
    sed -i -E 's#^(\s*)Header(\s)#\1std_msgs/Header\2#' "$dir/msg/$m.msg"
    msgs+="  \"msg/$m.msg\""$'\n'
  done
  cat > "$dir/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.8)
project(hri_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
rosidl_generate_interfaces(\${PROJECT_NAME}
${msgs}  DEPENDENCIES std_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
CMAKE
  local version
  version=$(sed -n 's#.*<version>\(.*\)</version>.*#\1#p' "$dir/package.xml")
  cat > "$dir/package.xml" <<XML
<?xml version="1.0"?>
<package format="3">
  <name>hri_msgs</name>
  <version>$version</version>
  <description>ROS4HRI (REP 155) messages: the .msg files of ros4hri/hri_msgs, built for ROS 2.</description>
  <maintainer email="severin.lemaignan@pal-robotics.com">Severin Lemaignan</maintainer>
  <license>BSD</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
}

# The underlay: checked sources, colcon in the venv, the CMake path fix, the build (cached).
build_underlay() {
  [ -d "$SRC_DIR" ] || die "no ROS 2 sources at $SRC_DIR (set ROS2_SRC_DIR)"
  command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)"
  command -v g++ >/dev/null || die "g++ not found (apt-get install g++)"
  SRC_DIR=$(cd "$SRC_DIR" && pwd)

  # --- the tarballs are the ones checked by hand -------------------------------------------------
  (cd "$SRC_DIR" && sha256sum --quiet -c SHA256SUMS) || die "$SRC_DIR: tarballs do not match SHA256SUMS"
  for t in "${TARBALLS[@]}"; do
    grep -q " $t\$" "$SRC_DIR/SHA256SUMS" || die "$t is not listed in $SRC_DIR/SHA256SUMS"
  done

  # --- colcon and the rosidl/ament CMake tools in the venv ----------------------------------------
  # --no-deps, no constraints: see requirements-colcon.txt (the project's setuptools pin stays).
  COLCON_STAMP=$VENV/.colcon-$(sha256sum "$COLCON_REQ" | cut -c1-12)
  if [ ! -e "$COLCON_STAMP" ]; then
    log "installing colcon into $VENV"
    "$PY" -m pip install -q --no-deps -r "$COLCON_REQ"
    rm -f "$VENV"/.colcon-* && touch "$COLCON_STAMP"
  fi

  # The wheels' CMake export files name the include folders of the machine that built them
  # (/opt/python/cp311-cp311/...): point them at this venv's Python and numpy. Idempotent.
  PY_INCLUDE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
  NP_INCLUDE=$("$PY" -c "import numpy; print(numpy.get_include())")
  [ -f "$PY_INCLUDE/Python.h" ] || die "no Python.h in $PY_INCLUDE (install the Python headers)"
  mapfile -t BAKED < <(grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" || true)
  if [ "${#BAKED[@]}" -gt 0 ]; then
    log "rewriting the wheel build machine's paths in ${#BAKED[@]} CMake files"
    sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INCLUDE#g" \
           -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INCLUDE#g" "${BAKED[@]}"
    ! grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" \
      || die "paths of /opt/python/cp311-cp311 left in the files above"
  fi

  # --- underlay: launch, launch_ros, ros2cli and the message packages (cached) ---------------------
  UNDERLAY_HASH=$(cat "$SRC_DIR/SHA256SUMS" "$COLCON_REQ" "$0" | sha256sum | cut -c1-12)
  UNDERLAY_STAMP=$WS/underlay/.built-$UNDERLAY_HASH
  if [ ! -e "$UNDERLAY_STAMP" ]; then
    log "building the underlay in $WS/underlay (a few minutes, once)"
    rm -rf "$WS/underlay"
    mkdir -p "$WS/underlay/src"
    for t in "${TARBALLS[@]}"; do tar -xzf "$SRC_DIR/$t" -C "$WS/underlay/src"; done
    port_hri_msgs "$WS/underlay/src/hri_msgs"
    start=$(date +%s)
    (cd "$WS/underlay" && colcon build --merge-install --base-paths src "${COLCON_ARGS[@]}")
    log "underlay built in $(( $(date +%s) - start )) s"
    touch "$UNDERLAY_STAMP"
  fi
}

export PATH=$VENV/bin:$PATH
export CMAKE_PREFIX_PATH=$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
export AMENT_PREFIX_PATH=$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}
COLCON_ARGS=(--event-handlers console_cohesion- status- summary+
             --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$PY" -DCMAKE_BUILD_TYPE=Release)

if $OVERLAY_ONLY; then
  [ -f "$WS/underlay/install/setup.bash" ] && [ -x "$VENV/bin/colcon" ] \
    || die "no underlay in $WS/underlay: run 'bash .ci/ros2_workspace.sh' first"
else
  build_underlay
fi

# --- overlay: this package, as `colcon build` on a ROS 2 host installs it (always rebuilt) -----
# --paths: only the repository's root is a package (colcon would otherwise crawl .cache, .venv).
# Its build folder lives in the workspace, not in the repository.
log "building the diffhpe_ros overlay in $WS/overlay"
# shellcheck disable=SC1091
set +u; source "$WS/underlay/install/setup.bash"; set -u
rm -rf "$WS/overlay/install/diffhpe_ros"
mkdir -p "$WS/overlay"
(cd "$WS/overlay" && colcon build --paths "$REPO" "${COLCON_ARGS[@]}")
[ -x "$WS/overlay/install/diffhpe_ros/lib/diffhpe_ros/lifter_node" ] \
  || die "overlay: lib/diffhpe_ros/lifter_node was not installed"
log "ready: source $WS/overlay/install/setup.bash"
