#!/usr/bin/env bash
# Install the Debian/Ubuntu packages Diffusion Studio needs: Qt's system libraries,
# and with --test also what the test suite uses (Xvfb for real-window tests, the
# desktop-file and AppStream validators). Uses sudo when not run as root.
set -euo pipefail

packages=(
  # Qt (PySide6) offscreen and on a desktop
  libegl1 libgl1 libx11-6 libdbus-1-3 libfontconfig1 libfreetype6 libglib2.0-0 libxkbcommon0
  libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-render0
  libxcb-shape0 libxcb-util1 libxcb-xkb1 libxkbcommon-x11-0
  # the app menu entry and its icon
  desktop-file-utils hicolor-icon-theme
)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(xvfb xauth x11-utils appstream librsvg2-bin libglib2.0-bin)
fi
# a Python that can make virtual environments
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  packages+=(python3-venv python3-pip)
fi

sudo_cmd=()
if [[ "$(id -u)" != 0 ]]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}"
