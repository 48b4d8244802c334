# Sourced by scripts/demo and scripts/test: create or reuse the virtualenv, then activate it.
#
# The virtualenv lives outside the clone, keyed by the hash of requirements/lock.txt (torch
# and CUDA wheels make it several GB, so every clone and CI run with the same lock reuses it).
# Override the location with EMBEDARENA_VENV.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
LOCK="$REPO/requirements/lock.txt"
LOCK_HASH="$( (cat "$LOCK"; "$PY" -c 'import sys; print(sys.version_info[:2])') | sha256sum | cut -c1-16)"
VENV="${EMBEDARENA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/embedarena-venvs/$LOCK_HASH}"

if [ ! -f "$VENV/.complete" ]; then
  echo "embedarena: creating virtualenv $VENV (first run: downloads torch, a few minutes)" >&2
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "uv==0.13.9"
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r "$LOCK"
  touch "$VENV/.complete"
fi
# the project itself: always re-installed (cheap), since each clone lives at its own path
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e "$REPO"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
