"""treefuse: the deep tree-structured fusion deraining network, from training to a verified engine."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("treefuse")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
