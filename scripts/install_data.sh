#!/usr/bin/env bash
# Install the real-audio Debian packages cnnaural_ext trains and demos on (see DATA.md):
#   wesnoth-1.16-music  (orchestral, /usr/share/games/wesnoth/1.16/data/core/music/*.ogg)
#   warzone2100-music   (electronic, /usr/share/games/warzone2100/music/**/*.opus)
#   klettres-data       (speech,     /usr/share/klettres/<lang>/{alpha,syllab}/*.ogg)
# Idempotent: does nothing when they are installed; runs `apt-get update` only when something
# is missing; uses sudo only when not root. Then build a corpus with `cnnaural dataset DIR`.
set -euo pipefail

PACKAGES=(wesnoth-1.16-music warzone2100-music klettres-data)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_data: already installed: ${PACKAGES[*]}"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_data: apt-get not found; install ${missing[*]} with your package manager" >&2
    exit 1
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "install_data: need root (or sudo) to install ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install_data: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install_data: done"
