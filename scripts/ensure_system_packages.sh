#!/usr/bin/env bash
# Makes sure the system packages the project needs are present, installing them with apt-get when missing.
# With no option: FluidSynth's shared library, which pyfluidsynth loads at run time.
#   --program      also the `fluidsynth` command-line program (for benchmarks/bench_render.py)
#   --soundfonts   also the FluidR3_GM and MuseScore General SoundFonts (optional, more timbres)
#   --chromaprint  Chromaprint's `fpcalc` (for benchmarks/bench_retrieval.py, the retrieval peer)
#   --servers      PostgreSQL and Redis servers, which the tests start on loopback (instance and Celery tests)
#   --browser      Chromium, which the labeling page's browser tests drive headless on loopback
set -euo pipefail

want="${1:-}"

have_fluidsynth() {
    ldconfig -p 2>/dev/null | grep -q 'libfluidsynth\.so' && return 0
    for dir in /usr/lib /usr/lib64 /usr/local/lib /opt/homebrew/lib /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu; do
        compgen -G "$dir/libfluidsynth*" >/dev/null && return 0
    done
    return 1
}

case "$want" in
    --program) packages="fluidsynth"; have() { command -v fluidsynth >/dev/null 2>&1; } ;;
    --soundfonts) packages="fluid-soundfont-gm musescore-general-soundfont"
                  have() { [ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] && [ -f /usr/share/sounds/sf3/MuseScore_General.sf3 ]; } ;;
    --chromaprint) packages="libchromaprint-tools"; have() { command -v fpcalc >/dev/null 2>&1; } ;;
    --servers) packages="postgresql redis-server"
               have() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && command -v redis-server >/dev/null 2>&1; } ;;
    --browser) packages="chromium"; have() { command -v chromium >/dev/null 2>&1; } ;;
    "") packages="libfluidsynth3"; have() { have_fluidsynth; } ;;
    *) echo "usage: $0 [--program|--soundfonts|--chromaprint|--servers|--browser]" >&2; exit 2 ;;
esac

if have; then
    exit 0
fi

if command -v apt-get >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ]; then
        echo "installing $packages with apt-get" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        # shellcheck disable=SC2086
        apt-get install -y -q --no-install-recommends $packages >/dev/null
        have && exit 0
        echo "apt-get finished but $packages is still not usable" >&2
        exit 1
    fi
    echo "Missing: $packages. Install it, then run make again:" >&2
    echo "    sudo apt-get install -y $packages" >&2
    exit 1
fi

cat >&2 <<'MSG'
FluidSynth (library, program or SoundFonts), Chromaprint's fpcalc, PostgreSQL, Redis or Chromium is missing and this
is not a Debian/Ubuntu system. Install it, then run make again:
    Fedora/RHEL:   sudo dnf install fluidsynth fluidsynth-libs fluid-soundfont-gm
    Arch:          sudo pacman -S fluidsynth soundfont-fluid
    macOS:         brew install fluid-synth   (SoundFonts: put .sf2 files in data/soundfonts/)
    Conda:         conda install -c conda-forge fluidsynth
    fpcalc:        sudo dnf install chromaprint-tools | sudo pacman -S chromaprint | brew install chromaprint
    servers:       sudo dnf install postgresql-server redis | sudo pacman -S postgresql redis | brew install postgresql redis
    browser:       sudo dnf install chromium | sudo pacman -S chromium | brew install --cask chromium
MSG
exit 1
