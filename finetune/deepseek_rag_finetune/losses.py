"""Contrastive losses over unit-length query and document embeddings.

Both losses take ``queries`` (B, d), ``positives`` (B, d) and optional ``negatives`` (B, n, d) — already
normalised, as :meth:`deepseek_rag.DualEncoder.embed` returns them. Under ``torch.distributed`` the document
side (and, for the symmetric direction, the query side) is gathered from every process with
``torch.distributed.nn.functional.all_gather``, which keeps gradients, so every process scores its queries
against the whole global batch (cross-device negatives). Every process must pass the same shapes.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)


def _distributed() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every process along dim 0; gradients flow back to each owner."""
    _, world = _distributed()
    if world == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def _documents(positives: torch.Tensor, negatives: torch.Tensor | None) -> torch.Tensor:
    """This process's candidate documents: the B positives, then the B*n negatives."""
    if negatives is None or negatives.numel() == 0:
        return positives
    return torch.cat([positives, negatives.reshape(-1, positives.shape[-1])], dim=0)


class InfoNCELoss(nn.Module):
    """Softmax cross-entropy of each query over all documents of the (global) batch.

    The candidates for a query are every positive and every hard negative of every pair in the batch —
    its own positive is the target. ``symmetric`` adds the document→query direction (each positive
    against all queries) and averages the two.
    """

    def __init__(self, temperature: float = 0.05, symmetric: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature!r} must be positive")
        self.temperature = temperature
        self.symmetric = symmetric

    def forward(self, queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        rank, _ = _distributed()
        batch = queries.shape[0]
        local_docs = _documents(positives, negatives)
        all_docs = gather_with_grad(local_docs)
        # On process r, its own documents start at r * len(local_docs); its positives come first there.
        labels = torch.arange(batch, device=queries.device) + rank * local_docs.shape[0]
        logits = queries @ all_docs.T / self.temperature
        loss = F.cross_entropy(logits.float(), labels)
        if self.symmetric:
            all_queries = gather_with_grad(queries)
            reverse = positives @ all_queries.T / self.temperature
            reverse_labels = torch.arange(batch, device=queries.device) + rank * batch
            loss = (loss + F.cross_entropy(reverse.float(), reverse_labels)) / 2
        return loss


class ContrastiveMarginLoss(nn.Module):
    """Pull each (query, positive) cosine to 1, push every negative below ``margin``.

    Negatives are the other positives of the (global) batch plus the mined ones. Loss per pair:
    ``(1 - cos(q, p))^2`` plus the mean of ``relu(cos(q, n) - margin)^2`` over its negatives.
    """

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        if not -1.0 <= margin <= 1.0:
            raise ValueError(f"margin={margin!r} must be a cosine in [-1, 1]")
        self.margin = margin

    def forward(self, queries: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        rank, _ = _distributed()
        batch = queries.shape[0]
        local_docs = _documents(positives, negatives)
        all_docs = gather_with_grad(local_docs)
        scores = (queries @ all_docs.T).float()
        own = torch.arange(batch, device=queries.device) + rank * local_docs.shape[0]
        positive_scores = scores[torch.arange(batch, device=queries.device), own]
        negative_mask = torch.ones_like(scores, dtype=torch.bool)
        negative_mask[torch.arange(batch, device=queries.device), own] = False
        pushed = F.relu(scores - self.margin).pow(2) * negative_mask
        negative_term = pushed.sum(dim=1) / negative_mask.sum(dim=1).clamp(min=1)
        return ((1 - positive_scores).pow(2) + negative_term).mean()


def build_loss(name: str, *, temperature: float = 0.05, symmetric: bool = False, margin: float = 0.5) -> nn.Module:
    """The loss a :class:`~deepseek_rag_finetune.config.FinetuneConfig` names."""
    if name == "infonce":
        return InfoNCELoss(temperature, symmetric)
    if name == "margin":
        return ContrastiveMarginLoss(margin)
    raise ValueError(f"loss={name!r} is not one of infonce, margin")
