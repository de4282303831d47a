#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the listening gallery's browser test
# (tests/test_gallery_browser.py). Idempotent (scripts/apt_install.sh).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/apt_install.sh" install_browser chromium chromium-driver
