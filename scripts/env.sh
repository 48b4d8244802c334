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
# The project itself is installed into the shared virtualenv once (for the `embedarena`
# command and the package metadata), never re-pointed: a clone sourcing this must not switch
# another clone's shells to its code. Each clone runs its own code because its `src` comes
# first on the path of every Python process started from here (the CLI, pytest, subprocesses),
# ahead of whatever clone the shared install points at (tests/test_env_sh.py checks both).
if ! "$VENV/bin/python" -c 'import importlib.metadata as m; m.distribution("embedarena")' \
    >/dev/null 2>&1; then
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" --no-deps -e "$REPO"
fi
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
