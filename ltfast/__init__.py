"""ltfast: fast, faithful long-tailed CIFAR classification."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The compiled module sits beside the package (see CMakeLists.txt), so a source checkout
    # run from the repository root still finds the installed build.
    from _ltfast import RecordReader
    from _ltfast import __version__ as _core_version
except ImportError as error:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "ltfast's compiled module _ltfast is missing: install the package with `pip install .` "
        "(or `pip install --no-build-isolation -e .` for development)"
    ) from error

from ltfast.datasets import CIFAR10, CIFAR100, LongTailCIFAR10, LongTailCIFAR100
from ltfast.samplers import ClassBalancedSampler, ProgressiveBalancedSampler, ShuffleSampler

try:
    __version__ = version("ltfast")
except PackageNotFoundError:  # pragma: no cover
    __version__ = _core_version

__all__ = [
    "CIFAR10",
    "CIFAR100",
    "ClassBalancedSampler",
    "LongTailCIFAR10",
    "LongTailCIFAR100",
    "ProgressiveBalancedSampler",
    "RecordReader",
    "ShuffleSampler",
    "__version__",
]
