#!/usr/bin/env bash
# Install the real-audio Debian packages cnnaural_ext trains and demos on (see DATA.md):
#   wesnoth-1.16-music  (orchestral, /usr/share/games/wesnoth/1.16/data/core/music/*.ogg)
#   warzone2100-music   (electronic, /usr/share/games/warzone2100/music/**/*.opus)
#   klettres-data       (speech,     /usr/share/klettres/<lang>/{alpha,syllab}/*.ogg)
#   ktuberling-data     (speech,     word clips per language, repeated names; `dpkg -L ktuberling-data`)
# Idempotent (scripts/apt_install.sh). Then build a corpus with `cnnaural dataset DIR`.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/apt_install.sh" install_data wesnoth-1.16-music warzone2100-music klettres-data \
    ktuberling-data
