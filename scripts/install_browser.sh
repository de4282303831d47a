#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver for the listening gallery's browser test
# (tests/test_gallery_browser.py). Idempotent; runs `apt-get update` only when something is
# missing; uses sudo only when not root.
set -euo pipefail

PACKAGES=(chromium chromium-driver)
missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_browser: already installed: ${PACKAGES[*]}"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: apt-get not found; install ${missing[*]} with your package manager" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=(sudo); else
        echo "install_browser: need root (or sudo) to install ${missing[*]}" >&2
        exit 1
    fi
fi
echo "install_browser: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
