"""Errors a caller can catch: each message names the bad value and what to do about it.

All of them derive from :class:`DeepSeekRAGError`; the ones that are a caller's mistake also derive from
``ValueError`` (or ``KeyError``/``FileNotFoundError``) so ordinary ``except`` clauses keep working.
"""

from __future__ import annotations


class DeepSeekRAGError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(DeepSeekRAGError, ValueError):
    """An argument or a piece of input data is not usable (empty text, bad ``top_k``, duplicate ids...)."""


class IndexFormatError(DeepSeekRAGError, ValueError):
    """An index directory is missing, damaged, or written by a format version this library does not know."""


class EncoderMismatchError(DeepSeekRAGError, ValueError):
    """An index is opened with an encoder other than the one that built it."""


class IndexSpecError(DeepSeekRAGError, ValueError):
    """A FAISS factory string cannot be built or trained with the vectors at hand."""


class DocumentNotFoundError(DeepSeekRAGError, KeyError):
    """A document id that the index does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(DeepSeekRAGError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class IndexLockedError(DeepSeekRAGError, RuntimeError):
    """Another writer holds an index directory's writer lock; the message names the holder."""


class ReadOnlyIndexError(DeepSeekRAGError, PermissionError):
    """A write to an index that was opened read-only or lives on a read-only file system."""


class LLMError(DeepSeekRAGError, RuntimeError):
    """The LLM server could not be reached, timed out, failed, or answered with something that is not an answer;
    the message names the server and what to check."""
