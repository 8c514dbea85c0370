#!/usr/bin/env bash
# Makes sure FluidSynth's shared library is present: pyfluidsynth loads it at run time.
set -euo pipefail

have_fluidsynth() {
    ldconfig -p 2>/dev/null | grep -q 'libfluidsynth\.so' && return 0
    for dir in /usr/lib /usr/lib64 /usr/local/lib /opt/homebrew/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu; do
        compgen -G "$dir/libfluidsynth*" >/dev/null && return 0
    done
    return 1
}

if have_fluidsynth; then
    exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        echo "FluidSynth library not found: installing libfluidsynth3 with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q libfluidsynth3 >/dev/null
        have_fluidsynth && exit 0
        echo "apt-get finished but libfluidsynth is still not visible to the dynamic loader" >&2
        exit 1
    fi
    echo "FluidSynth's library (libfluidsynth3) is missing. Install it, then run make again:" >&2
    echo "    sudo apt-get install -y libfluidsynth3" >&2
    exit 1
fi

cat >&2 <<'MSG'
FluidSynth's library is missing and this is not a Debian/Ubuntu system. Install it, then run make again:
    Fedora/RHEL:   sudo dnf install fluidsynth-libs
    Arch:          sudo pacman -S fluidsynth
    macOS:         brew install fluid-synth
    Conda:         conda install -c conda-forge fluidsynth
MSG
exit 1
