"""The GPU copy of a CPU faiss index: made lazily on the first search that can use it, dropped on every change.

faiss-gpu is optional (the ``gpu`` extra): without a GPU, or for an index faiss cannot move (fast-scan
codes, say), searches stay on the CPU index, which is always the one saved.
"""

from __future__ import annotations

import logging

import faiss

from ..errors import MissingDependencyError

logger = logging.getLogger(__name__)

GPU_MAX_K = 2048
"""faiss GPU search refuses larger k or nprobe; such searches run on the CPU index."""


def want_gpu(use_gpu: bool | None) -> bool:
    """Whether to search on a GPU: ``None`` = when faiss sees one; ``True`` without one is an error."""
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu and gpus == 0:
        raise MissingDependencyError(
            "use_gpu=True but faiss sees no GPU: install the 'gpu' extra (pip install 'deepseek-rag[gpu]') "
            "on a CUDA machine, or pass use_gpu=None"
        )
    return gpus > 0 if use_gpu is None else bool(use_gpu)


class GpuMirror:
    """A GPU clone of one CPU index; a failed move is remembered, so it is tried once."""

    def __init__(self) -> None:
        self._index: faiss.Index | None = None
        self._resources = None
        self._failed = False

    def index_for(self, cpu_index: faiss.Index, spec: str) -> faiss.Index | None:
        """The GPU clone of ``cpu_index`` (made now if needed), or None when it cannot be made."""
        if self._index is None and not self._failed:
            try:
                if self._resources is None:
                    self._resources = faiss.StandardGpuResources()
                self._index = faiss.index_cpu_to_gpu(self._resources, 0, cpu_index)
            except (RuntimeError, AttributeError) as exc:
                logger.warning("cannot move index %r to the GPU (%s); searching on the CPU", spec, exc)
                self._failed = True
        return self._index

    def drop(self) -> None:
        """Forget the clone (the CPU index changed)."""
        self._index = None
