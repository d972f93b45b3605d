#!/usr/bin/env bash
# One set-up path for users, CI and every make target: a virtual environment with the pinned
# packages of requirements.txt, this project installed in it (editable), and kairos_msgs built
# and installed into the venv prefix (which the ROS wheels treat as a ROS install prefix).
# Idempotent: it does nothing when the stamp says the venv matches the current inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${KAIROS_VENV:-$ROOT/.venv}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}

inputs_hash() {
  cat requirements.txt scripts/setup.sh setup.py kairos_msgs/CMakeLists.txt kairos_msgs/package.xml \
      kairos_msgs/msg/* kairos_msgs/srv/* | sha256sum | cut -c1-16
}
STAMP="$VENV/.kairos-setup-$(inputs_hash)"
if [ -f "$STAMP" ]; then
  exit 0
fi

"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || {
  echo "setup: Python 3.11 is required (the ros-kilted wheels are cp311); found $("$PY" --version)" >&2
  exit 1
}
echo "setup: creating/updating the virtual environment in $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
$PIP install -q --upgrade pip
# torch first, alone: an unpinned torch pulled in by another package would be a multi-GB CUDA build.
$PIP install -q "torch==2.13.0"
printf 'torch==2.13.0\n' > "$VENV/torch-constraint.txt"
$PIP install -q -r requirements.txt -c "$VENV/torch-constraint.txt"
$PIP install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" - <<'PY'
import torch, sys
if not torch.__version__.startswith("2.13.0"):
    sys.exit(f"setup: torch {torch.__version__} was installed, expected 2.13.0")
PY

# Offscreen rendering for the simulated camera: MuJoCo needs an EGL (or OSMesa) GL library.
if ! ldconfig -p 2>/dev/null | grep -q -E 'libEGL_mesa|libOSMesa'; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Mesa EGL for offscreen rendering (apt: libegl1 libegl-mesa0 libgl1-mesa-dri)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
  else
    echo "setup: WARNING: no Mesa EGL/OSMesa library found; the simulator's camera needs one" \
         "(apt install libegl1 libegl-mesa0 libgl1-mesa-dri)" >&2
  fi
fi

echo "setup: building kairos_msgs"
BUILD=$ROOT/build/kairos_msgs
rm -rf "$BUILD"; mkdir -p "$BUILD"
CMAKE="$VENV/bin/cmake"
CMAKE_PREFIX_PATH="$VENV" AMENT_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
  "$CMAKE" -S kairos_msgs -B "$BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF > "$ROOT/build/kairos_msgs.configure.log" 2>&1 \
  || { tail -40 "$ROOT/build/kairos_msgs.configure.log"; echo "setup: kairos_msgs configure failed" >&2; exit 1; }
PATH="$VENV/bin:$PATH" "$CMAKE" --build "$BUILD" -j"$(nproc)" > "$ROOT/build/kairos_msgs.build.log" 2>&1 \
  || { tail -40 "$ROOT/build/kairos_msgs.build.log"; echo "setup: kairos_msgs build failed" >&2; exit 1; }
"$CMAKE" --install "$BUILD" > "$ROOT/build/kairos_msgs.install.log" 2>&1
(cd /tmp && "$VENV/bin/python" -c "from kairos_msgs.msg import ActionChunk; import rclpy") \
  || { echo "setup: kairos_msgs was built but does not import" >&2; exit 1; }

rm -f "$VENV"/.kairos-setup-*
touch "$STAMP"
echo "setup: done ($VENV)"
