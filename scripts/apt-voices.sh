#!/usr/bin/env bash
# Installs the recorded TTS voices of Debian's contrib and non-free sections (MBROLA diphone voices driven by
# espeak-ng, RHVoice, SVOX Pico) that `ceasr synth --engines all` adds to espeak-ng, flite and festival:
# natural timbres the formant and HTS voices of Debian main do not have. Enables those two sections (a sources file
# of its own, /etc/apt/sources.list.d/ceasr-contrib-non-free.sources) only when apt cannot see them yet.
# Usage: apt-voices.sh PACKAGE...   (`make voices` passes APT_VOICES)
set -euo pipefail
[ "$#" -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *" ok installed" ]]; }
missing=""  # the first package not installed (a loop, not `| head -1`: under pipefail that dies of SIGPIPE)
for p in "$@"; do installed "$p" || { missing=$p; break; }; done
[ -n "$missing" ] || exit 0
. /etc/os-release
if [ "${ID:-}" != debian ]; then
	echo "apt-voices: not Debian (${ID:-unknown}); skipping the contrib/non-free voices ($*)" >&2
	exit 0
fi
policy=$(apt-cache policy "$missing" 2>/dev/null)
if [[ "$policy" != *"Candidate: "[0-9]* ]]; then
	echo "enabling Debian contrib and non-free for the TTS voices (/etc/apt/sources.list.d/ceasr-contrib-non-free.sources)"
	cat > /etc/apt/sources.list.d/ceasr-contrib-non-free.sources <<SOURCES
Types: deb
URIs: http://deb.debian.org/debian
Suites: ${VERSION_CODENAME}
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
	apt-get update -qq
fi
echo "installing TTS voices: $*"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
