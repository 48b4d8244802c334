"""embedarena: benchmark embedding models side by side on your own retrieval data.

    import embedarena as ea
    result = ea.run_experiment("experiment.yaml")
    result.comparison.to_pandas()

The names below load on first use, so `import embedarena` (and `embedarena --help`) stays
fast and never imports torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("embedarena")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

if TYPE_CHECKING:
    from embedarena.arena import (
        Arena,
        ExperimentResult,
        inline_experiment,
        run_experiment,
        tune_fusion,
    )
    from embedarena.evaluation.compare import Comparison
    from embedarena.evaluation.run import Run
    from embedarena.experiment import Experiment, load_experiment
    from embedarena.progress import Progress, RecordingProgress

_EXPORTS = {
    "Arena": "arena", "ExperimentResult": "arena", "inline_experiment": "arena",
    "run_experiment": "arena", "tune_fusion": "arena",
    "Comparison": "evaluation.compare", "Run": "evaluation.run",
    "Experiment": "experiment", "load_experiment": "experiment",
    "Progress": "progress", "RecordingProgress": "progress",
}

__all__ = ["Arena", "Comparison", "Experiment", "ExperimentResult", "Progress",
           "RecordingProgress", "Run", "__version__", "inline_experiment", "load_experiment",
           "run_experiment", "tune_fusion"]


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'embedarena' has no attribute {name!r}")
    return getattr(importlib.import_module(f"embedarena.{mod}"), name)
