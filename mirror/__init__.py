"""mirror: keep an on-site mirror of the Python Package Index in step with upstream."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mirror")
except PackageNotFoundError:  # pragma: no cover - only when run from an uninstalled tree
    __version__ = "0.0.0"
