#!/usr/bin/env bash
# Install Debian packages idempotently: nothing when they are installed; `apt-get update` only
# when something is missing; sudo only when not root.
# Usage: scripts/apt_install.sh LABEL PACKAGE...
set -euo pipefail

label="$1"
shift
missing=()
for p in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    echo "$label: already installed: $*"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$label: apt-get not found; install ${missing[*]} with your package manager" >&2
    exit 1
fi
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "$label: need root (or sudo) to install ${missing[*]}" >&2
        exit 1
    fi
fi
echo "$label: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "$label: done"
