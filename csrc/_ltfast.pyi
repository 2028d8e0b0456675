"""Type stubs of ltfast's compiled module."""

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

__version__: str

class RecordReader:
    def __init__(
        self, paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], label_bytes: int = 1
    ) -> None: ...
    def __len__(self) -> int: ...
    @property
    def label_bytes(self) -> int: ...
    @property
    def record_size(self) -> int: ...
    @property
    def paths(self) -> list[str]: ...
    @property
    def labels(self) -> npt.NDArray[np.int64]: ...
    @property
    def coarse_labels(self) -> npt.NDArray[np.int64]: ...
    def decode(
        self,
        indices: npt.ArrayLike | None = None,
        layout: Literal["NCHW", "NHWC"] = "NCHW",
        out: npt.NDArray[np.uint8] | None = None,
        threads: int = 0,
    ) -> npt.NDArray[np.uint8]: ...
