"""embedarena: benchmark embedding models side by side on your own retrieval data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("embedarena")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
