"""scripts/env.sh with two clones (issue 12, item 8): the virtualenv keyed by the lock hash is
shared, yet each clone runs its own code, and sourcing it in one clone never re-points
another's (it used to re-install the project editable from the last clone that sourced it).

Real `git clone`s of this repository into tmp dirs, with the working tree's env.sh and lock
(so the lock hash, hence the virtualenv, is the one in use: nothing is built or downloaded).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_pth(venv: Path) -> dict[str, str]:
    """The shared virtualenv's .pth files (an editable install is one): name → content."""
    return {p.name: p.read_text(encoding="utf-8")
            for p in sorted(venv.glob("lib/python3*/site-packages/*.pth"))}


def test_two_clones_see_their_own_code(tmp_path: Path) -> None:
    venv = Path(os.environ.get("VIRTUAL_ENV", ""))
    if not (REPO / ".git").exists() or not (venv / ".complete").is_file():
        pytest.skip("needs a git checkout and the virtualenv of scripts/env.sh")
    clones = {}
    for name in ("a", "b"):
        clone = tmp_path / name
        subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True,
                       timeout=120)
        for rel in ("scripts/env.sh", "requirements/lock.txt"):  # as in the working tree
            shutil.copy(REPO / rel, clone / rel)
        init = clone / "src" / "embedarena" / "__init__.py"
        init.write_text(init.read_text(encoding="utf-8") + (
            "\nif __import__('os').environ.get('WHICH_CLONE'):\n"
            "    __import__('sys').stderr.write('embedarena from ' + __file__ + '\\n')\n"),
                        encoding="utf-8")
        clones[name] = clone
    before = _shared_pth(venv)
    where = "python -c 'import embedarena; print(embedarena.__file__)'"
    script = f"""
set -e
cd {clones['a']} && source scripts/env.sh && set +eu
{where}
(cd {clones['b']} && source scripts/env.sh && set +eu && {where} &&
  WHICH_CLONE=1 embedarena --version)
{where}
WHICH_CLONE=1 embedarena --version
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["EMBEDARENA_VENV"] = str(venv)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    a_init = str(clones["a"] / "src" / "embedarena" / "__init__.py")
    b_init = str(clones["b"] / "src" / "embedarena" / "__init__.py")
    printed = out.stdout.split()
    # A, then B in B's shell, then A again in A's shell after B sourced env.sh
    assert [p for p in printed if p.endswith("__init__.py")] == [a_init, b_init, a_init]
    assert out.stderr.splitlines() == [f"embedarena from {b_init}", f"embedarena from {a_init}"]
    assert _shared_pth(venv) == before  # the shared install was not re-pointed
