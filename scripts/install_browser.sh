#!/usr/bin/env bash
# Debian's headless Chromium and its ChromeDriver for the report's browser test (make
# test-browser). The test never downloads a browser or a driver: both come from here. Needs root
# (CI runs as root); a no-op when both are installed.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install_browser: needs root: sudo apt-get install chromium chromium-driver" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
  apt-get update -q >/dev/null
  apt-get install -y -q chromium chromium-driver >/dev/null
}
/usr/bin/chromium --version
