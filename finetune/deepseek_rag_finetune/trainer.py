"""The LoRA trainer: pairs in, an adapter folder the core loads out.

One loop for one process or many (``torchrun``: DistributedDataParallel, gloo on CPU / nccl on CUDA, each
process scoring its queries against every process's documents). AdamW with linear warm-up, then
``ReduceLROnPlateau`` on the dev nDCG@10; early stopping keeps the best adapter; gradient accumulation,
gradient checkpointing and AMP on CUDA; checkpoints every epoch (or ``save_every`` steps) that
``resume_from`` continues exactly. Only rank 0 writes. Pair reading is ``pairs.py``'s job, the loss
``losses.py``'s, the adapter layout ``output.py``'s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepseek_rag.errors import InvalidInputError

from . import checkpoint as ckpt
from .config import FinetuneConfig
from .dev_eval import build_dev_set, evaluate_dev
from .distributed import DistributedContext, barrier, broadcast_object, setup_distributed, teardown
from .losses import build_loss
from .lora import TrainableEncoder
from .mining import mine_hard_negatives
from .output import adapter_bytes, base_model_bytes, save_adapter_folder, write_report
from .pairs import TrainingPair, deduplicate, split_dev
from .tracking import MetricsLog

__all__ = ["FinetuneConfig", "TrainingResult", "Trainer", "finetune"]

logger = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What a run did; ``report`` is what ``OUT/training_report.json`` holds."""

    out: Path
    steps: int
    start_step: int
    dev_before: dict[str, float]
    dev_after: dict[str, float]
    losses: list[float] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Fine-tune ``config.model`` on ``train_pairs`` (evaluating on ``dev_pairs``) and write an adapter to ``out``."""

    def __init__(self, config: FinetuneConfig, train_pairs: list[TrainingPair], dev_pairs: list[TrainingPair] | None,
                 out: str | Path, *, corpus: list[str] | None = None, resume_from: str | Path | None = None) -> None:
        self.config = config
        self.train_pairs = list(train_pairs)
        self.dev_pairs = list(dev_pairs or [])
        self.out = Path(out)
        self.corpus = corpus
        self.resume_state = ckpt.load_state(resume_from) if resume_from is not None else None

    # ------------------------------------------------------------------------------------------ setup
    def _check_size(self, world: int) -> None:
        need = self.config.batch_size * world
        if len(self.train_pairs) < need:
            raise InvalidInputError(
                f"only {len(self.train_pairs)} training pairs, fewer than one batch of {self.config.batch_size}"
                + (f" x {world} processes" if world > 1 else "")
                + f"; lower --batch-size (at most {max(2, len(self.train_pairs) // world)}) or add pairs"
            )

    def _with_negatives(self, encoder: Any, ctx: DistributedContext) -> tuple[list[TrainingPair], int]:
        """Mine (rank 0, then shared) and give every pair the same number of negatives, as batching needs."""
        cfg = self.config
        n = cfg.hard_negatives or (1 if any(p.negatives for p in self.train_pairs) else 0)
        pairs = self.train_pairs
        if cfg.hard_negatives and any(len(p.negatives) < n for p in pairs):
            if ctx.is_main:
                from .mining import encoder_encode

                logger.info("mining %d hard negatives per pair (%s, ranks %s)", n, cfg.mining, cfg.mining_ranks)
                pairs = mine_hard_negatives(pairs, encoder_encode(encoder), corpus=self.corpus, method=cfg.mining,
                                            n=n, ranks=cfg.mining_ranks, margin=cfg.mining_margin,
                                            relative=cfg.mining == "bm25")
            pairs = broadcast_object(pairs, ctx)
        if n == 0:
            return pairs, 0
        rng = random.Random(cfg.seed)
        pool = [p.positive for p in pairs]
        filled = []
        for pair in pairs:  # top up with random other positives: still negatives, just easy ones
            negatives = list(pair.negatives[:n])
            while len(negatives) < n:
                candidate = pool[rng.randrange(len(pool))]
                if candidate != pair.positive:
                    negatives.append(candidate)
            filled.append(TrainingPair(pair.query, pair.positive, negatives))
        return filled, n

    # ------------------------------------------------------------------------------------------ run
    def train(self) -> TrainingResult:
        from deepseek_rag.encoding.dual_encoder import DualEncoder, EncoderConfig

        cfg = self.config
        started = time.perf_counter()
        ctx = setup_distributed(cfg.device)
        try:
            self._check_size(ctx.world_size)
            _seed_everything(cfg.seed)
            encoder = DualEncoder(EncoderConfig(model=cfg.model, dtype="float32", device=ctx.device, max_seq_length=cfg.max_seq_length))
            base_fingerprint, base_name = encoder.base_fingerprint, encoder.fingerprint()["model"]
            pairs, n_neg = self._with_negatives(encoder, ctx)
            module = TrainableEncoder(encoder, cfg).to(ctx.device)
            return self._run(ctx, module, pairs, n_neg, base_fingerprint, base_name, started)
        finally:
            teardown(ctx)

    def _run(self, ctx: DistributedContext, module: TrainableEncoder, pairs: list[TrainingPair], n_neg: int,
             base_fingerprint: str, base_name: str, started: float) -> TrainingResult:
        from torch.utils.data import DataLoader, DistributedSampler
        from tqdm.auto import tqdm

        cfg = self.config
        sampler = DistributedSampler(pairs, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed, drop_last=True)
        # Its own generator: creating an iterator must not draw from the global RNG that dropout uses,
        # or a resumed run (which creates one mid-epoch) would drift from the uninterrupted one.
        loader = DataLoader(pairs, batch_size=cfg.batch_size, sampler=sampler, drop_last=True, collate_fn=list,
                            generator=torch.Generator().manual_seed(cfg.seed))
        micro_per_epoch = len(loader)
        steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accumulation)
        total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
        warmup_steps = int(total_steps * cfg.warmup_ratio)
        trainable = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / (warmup_steps + 1)))
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.plateau_factor, patience=0, threshold=1e-4)
        amp_dtype = _amp_dtype(cfg.amp, ctx.device)
        scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        loss_fn = build_loss(cfg.loss, temperature=cfg.temperature, symmetric=cfg.symmetric, margin=cfg.margin)
        model: torch.nn.Module = module
        if ctx.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(module, device_ids=[ctx.local_rank] if ctx.device.startswith("cuda") else None)
        dev = build_dev_set(self.dev_pairs, pairs, pool=cfg.dev_pool, seed=cfg.seed)
        log = MetricsLog(self.out, enabled=ctx.is_main, use_mlflow=cfg.mlflow, params=cfg.to_dict())

        def evaluate() -> dict[str, float]:
            metrics = evaluate_dev(module.encode, dev) if ctx.is_main and len(dev) else {}
            return broadcast_object(metrics, ctx)

        step = epoch = skip = bad_evals = last_eval_step = 0
        best_state, best_metric, best_metrics, dev_before = None, -1.0, {}, {}
        state = self.resume_state
        if state is not None:
            module.load_trainable_state(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            warmup.load_state_dict(state["warmup"])
            plateau.load_state_dict(state["plateau"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            step, epoch, skip = state["step"], state["epoch"], state["batch_in_epoch"]
            best_metric, bad_evals, dev_before = state["best_metric"], state["bad_evals"], state["dev_before"]
            best_state, best_metrics = state.get("best_state"), state.get("best_metrics", {})
            ckpt.restore_rng(state)
            logger.info("resumed from %s at step %d (epoch %d, batch %d)", state["path"], step, epoch, skip)
        else:
            dev_before = evaluate()
            if dev_before:
                log.log(0, **{f"dev_{k}": v for k, v in dev_before.items()})
        start_step = step

        def save_checkpoint(batch_in_epoch: int, at_epoch: int) -> None:
            if ctx.is_main:
                folder = ckpt.checkpoint_dir(self.out, step)
                save_adapter_folder(module, folder / "adapter", base_fingerprint=base_fingerprint, base_model=base_name)
                cfg.to_json(folder / "config.json")
                ckpt.save_state(folder, {
                    "model": module.trainable_state(), "optimizer": optimizer.state_dict(), "warmup": warmup.state_dict(),
                    "plateau": plateau.state_dict(), "scaler": scaler.state_dict() if scaler else None, "step": step,
                    "epoch": at_epoch, "batch_in_epoch": batch_in_epoch, "best_metric": best_metric,
                    "bad_evals": bad_evals, "dev_before": dev_before, "best_state": best_state,
                    "best_metrics": best_metrics,
                })
                ckpt.prune(self.out, cfg.keep_checkpoints)
            barrier(ctx)

        def after_eval(metrics: dict[str, float]) -> bool:
            """Track the best adapter, step the plateau scheduler; True when patience has run out."""
            nonlocal best_state, best_metric, best_metrics, bad_evals, last_eval_step
            if not metrics:
                return False
            last_eval_step = step
            log.log(step, **{f"dev_{k}": v for k, v in metrics.items()})
            score = metrics["ndcg@10"]
            if score > best_metric + 1e-4:
                best_metric, best_metrics, best_state, bad_evals = score, metrics, module.trainable_state(), 0
            else:
                bad_evals += 1
            if step > warmup_steps:
                plateau.step(score)
            return cfg.patience is not None and bad_evals >= cfg.patience

        bar = tqdm(total=total_steps, initial=step, desc="finetune", unit="step", disable=not (cfg.progress and ctx.is_main))
        losses: list[float] = []
        stop = step >= total_steps
        model.train()
        while not stop:
            sampler.set_epoch(epoch)
            running, micro = 0.0, 0
            for index, batch in enumerate(loader):
                if index < skip:
                    continue
                micro += 1
                boundary = micro % cfg.grad_accumulation == 0 or index == micro_per_epoch - 1
                sync = contextlib.nullcontext() if boundary or ctx.world_size == 1 else model.no_sync()
                with sync:
                    loss = self._micro_step(model, module, loss_fn, batch, n_neg, amp_dtype, ctx.device)
                    scaled = loss / cfg.grad_accumulation
                    (scaler.scale(scaled) if scaler else scaled).backward()
                running += float(loss.detach()) / cfg.grad_accumulation
                if not boundary:
                    continue
                if scaler:
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if step <= warmup_steps:
                    warmup.step()
                losses.append(running)
                log.log(step, epoch=epoch, loss=round(running, 5), lr=optimizer.param_groups[0]["lr"])
                bar.update(1)
                bar.set_postfix(loss=f"{running:.4f}")
                running = 0.0
                if cfg.eval_every and step % cfg.eval_every == 0:
                    stop = after_eval(evaluate())
                if cfg.save_every and step % cfg.save_every == 0:
                    save_checkpoint(index + 1, epoch)
                if stop or step >= total_steps:
                    stop = True
                    break
            else:  # a full epoch
                epoch, skip = epoch + 1, 0
                if not cfg.eval_every:
                    stop = after_eval(evaluate()) or stop
                if not cfg.save_every:
                    save_checkpoint(0, epoch)
                stop = stop or step >= total_steps
        bar.close()
        if len(dev) and best_state is not None and last_eval_step != step:
            after_eval(evaluate())  # the last steps ran after the last evaluation: score them before choosing
        if best_state is not None:
            # Early stopping keeps the best evaluation's weights, and that evaluation's figures.
            module.load_trainable_state(best_state)
            dev_after = best_metrics
        else:
            dev_after = evaluate()
        result = TrainingResult(self.out, step, start_step, dev_before, dev_after, losses)
        if ctx.is_main:
            save_adapter_folder(module, self.out, base_fingerprint=base_fingerprint, base_model=base_name)
            result.report = self._report(module, ctx, pairs, dev, dev_before, dev_after, step, epoch, started, base_name)
            write_report(self.out, result.report)
            log.log(step, **{f"final_dev_{k}": v for k, v in dev_after.items()})
            log.log_outputs(self.out)
        log.close()
        barrier(ctx)
        return result

    def _micro_step(self, model, module, loss_fn, batch, n_neg, amp_dtype, device) -> torch.Tensor:
        encoder = module.encoder
        documents = [p.positive for p in batch] + [n for p in batch for n in p.negatives[:n_neg]]
        query_features = encoder.tokenize([p.query for p in batch], "query")
        document_features = encoder.tokenize(documents, "document")
        autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
        with autocast:
            q, d = model(query_features, document_features)
        positives, negatives = d[: len(batch)], d[len(batch):].reshape(len(batch), n_neg, -1) if n_neg else None
        return loss_fn(q.float(), positives.float(), None if negatives is None else negatives.float())

    def _report(self, module, ctx, pairs, dev, dev_before, dev_after, step, epoch, started, base_name) -> dict[str, Any]:
        trainable, total = module.parameter_counts()
        adapter_size = adapter_bytes(self.out)
        base_size = base_model_bytes(module.encoder.model_name)
        return {
            "base_model": base_name,
            "config": self.config.to_dict(),
            "world_size": ctx.world_size,
            "train_pairs": len(pairs),
            "dev_pairs": len(self.dev_pairs),
            "dev_queries": len(dev.queries),
            "dev_corpus": len(dev.corpus),
            "dev_before": dev_before,
            "dev_after": dev_after,
            "steps": step,
            "epochs_started": epoch,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "trainable_parameters": trainable,
            "total_parameters": total,
            "trainable_share": round(trainable / total, 6),
            "adapter_bytes": adapter_size,
            "base_model_bytes": base_size,
            "adapter_to_base": round(adapter_size / base_size, 5) if base_size else None,
        }


def finetune(pairs: list[TrainingPair], out: str | Path, config: FinetuneConfig | None = None, *,
             dev_pairs: list[TrainingPair] | None = None, corpus: list[str] | None = None,
             resume_from: str | Path | None = None) -> TrainingResult:
    """Dedupe ``pairs``, hold out a dev split by query hash (unless ``dev_pairs`` is given), train, write ``out``."""
    config = config or FinetuneConfig()
    pairs = deduplicate(pairs)
    if dev_pairs is None:
        train, dev = split_dev(pairs, config.dev_fraction)
    else:
        train, dev = pairs, deduplicate(dev_pairs)
    return Trainer(config, train, dev, out, corpus=corpus, resume_from=resume_from).train()


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _amp_dtype(amp: str, device: str) -> torch.dtype | None:
    if not device.startswith("cuda") or amp == "none":
        return None
    if amp == "bf16" or (amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16
