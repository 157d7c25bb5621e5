#!/usr/bin/env bash
# Sets up a fresh Debian 12 (bookworm) machine to build, test and benchmark autotune:
#   1. system packages (apt): LLVM 19 for the JIT, SQLite for the tuning log, Chromium for the
#      report's end-to-end test;
#   2. Python packages (pip, requirements-dev.txt): numpy for the bench baseline, onnx/onnxruntime,
#      the NVRTC and ptxas wheels for the GPU backend's offline checks;
#   3. cargo build --release --workspace.
# Safe to run again: installed pieces are skipped, the build is incremental.
# Needs Rust (rustup, see README.md) and Python 3 with pip already on the machine.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

APT_PACKAGES=(
    llvm-19-dev     # inkwell's LLVM (feature llvm19-1-prefer-dynamic; see .cargo/config.toml)
    libpolly-19-dev # needed by llvm-sys's build probing on some setups, and for static linking
    libzstd-dev     # likewise
    libsqlite3-dev  # rusqlite links the system SQLite (not bundled: builds in seconds)
    chromium        # headless browser: the end-to-end test renders `autotune report` in it
    fonts-liberation # a font for Chromium's screenshots (only recommended by the package)
)

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: %s\n' "$*" >&2; exit 1; }

# Root runs apt-get directly; anyone else needs sudo.
if [ "$(id -u)" -eq 0 ]; then
    AS_ROOT=()
elif command -v sudo >/dev/null 2>&1; then
    AS_ROOT=(sudo)
else
    die "installing system packages needs root: run this script as root or install sudo"
fi

# --- 1. system packages ------------------------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -eq 0 ]; then
    say "apt packages already installed: ${APT_PACKAGES[*]}"
else
    say "apt-get update"
    "${AS_ROOT[@]}" apt-get update
    say "apt-get install ${missing[*]}"
    "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
[ -x /usr/lib/llvm-19/bin/llvm-config ] || die "/usr/lib/llvm-19/bin/llvm-config is missing after installing llvm-19-dev"

# --- 2. Python packages ------------------------------------------------------------------------
command -v python3 >/dev/null 2>&1 || die "python3 is not installed (apt-get install python3 python3-pip)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is missing for $(command -v python3) (apt-get install python3-pip)"
# Debian's own python3 refuses pip installs (PEP 668) outside a virtual environment.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -e "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
    die "$(command -v python3) is managed by the OS: create and activate a virtual environment first (python3 -m venv .venv && . .venv/bin/activate), then run bash setup.sh again"
fi
say "python3 -m pip install -r requirements-dev.txt ($(command -v python3))"
python3 -m pip install -r requirements-dev.txt

# --- 3. Rust build -----------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not installed: install Rust with rustup (https://rustup.rs), then run bash setup.sh again"
say "cargo build --release --workspace ($(cargo --version))"
cargo build --release --workspace

say "done. Run the tests: cargo test --workspace --release"
