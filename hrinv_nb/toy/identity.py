"""A toy identity embedder (the ArcFace analogue of the toy world) for ID retrieval (Table III).

A small CNN (6 conv layers with BatchNorm, ~1.7M parameters) maps a 64x64 render in [-1, 1] of any
style to a unit-norm 128-d embedding; other input sizes are resized to 64x64 (bilinear, antialias).
It is trained so that renders of one identity in any style and under any nuisance lie close together
and different identities far apart: every batch holds ``P`` identities, each rendered in all four
``STYLES`` with independent random nuisances, and the loss is supervised-contrastive (InfoNCE with
every other view of the same identity as a positive, temperature ``tau``) plus an auxiliary linear
regression of the identity factors from the embedding.

Usage::

    model = load_id_embedder()                 # data/id_embedder_toy.safetensors
    embed = id_embedder_fn(model)              # [B,3,H,W] in [-1,1] -> [B,128], unit norm, no grad
    id_retrieval(embed(photos), embed(stylised), labels)

Rebuild the weights (and the JSON provenance with the measured retrieval) with
``python -m hrinv_nb.toy.identity``, or call :func:`train_id_embedder` with ``device='cuda',
time_budget_s=...`` (the training renders are made on that device).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hrinv_nb.toy.rebuild import rebuild_main
from hrinv_nb.toy.render import N_IDENTITY, N_NUISANCE, STYLES, sample_identity, sample_nuisance
from hrinv_nb.toy.vgg import (
    DATA_DIR,
    REPO_ROOT,
    WORK_DIR,
    Budget,
    auto_setting,
    cached_dataset,
    from_uint8,
    render_on,
    renderer_fingerprint,
    save_safetensors,
    to_uint8,
    write_provenance,
)

__all__ = [
    "ID_EMBEDDER_PATH",
    "ID_EMBEDDER_JSON",
    "EMBED_SIZE",
    "REBUILD_COMMAND",
    "TARGET_STYLES",
    "ToyIdEmbedder",
    "load_id_embedder",
    "save_id_embedder",
    "id_embedder_fn",
    "render_identity_views",
    "augment",
    "supcon_loss",
    "render_retrieval_set",
    "evaluate_id_retrieval",
    "train_id_embedder",
    "main",
]

ID_EMBEDDER_PATH = DATA_DIR / "id_embedder_toy.safetensors"
ID_EMBEDDER_JSON = ID_EMBEDDER_PATH.with_suffix(".json")
REBUILD_COMMAND = "PYTHONPATH=. python -m hrinv_nb.toy.identity"
EMBED_SIZE = 64
TARGET_STYLES: tuple[str, ...] = tuple(s for s in STYLES if s != "photo")
_VAR_UNIFORM = 1.0 / 3.0


# ----------------------------------------------------------------------------------------------
# Network


def _conv_bn(c_in: int, c_out: int, stride: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2 if kernel % 2 else kernel // 2 - 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class ToyIdEmbedder(nn.Module):
    """Images [B,3,H,W] in [-1,1] -> unit-norm identity embeddings [B, dim].

    Six conv-BN-ReLU layers (a 4x4 stride-2 stem, then 3x3; ``width`` x 1, 2, 4, 4, 8, 8 channels;
    64 -> 32 -> 16 -> 16 -> 8 -> 8 -> 4 pixels), then a
    linear map of the flattened 4x4 grid to ``dim``. ``factor_head`` (a linear regression of the
    identity factors from the normalised embedding) is only used as a training aid.
    """

    def __init__(self, width: int = 32, dim: int = 128, n_factors: int = N_IDENTITY) -> None:
        super().__init__()
        self.config = {"width": width, "dim": dim, "n_factors": n_factors}
        w = width
        self.trunk = nn.Sequential(
            _conv_bn(3, w, 2, kernel=4),
            _conv_bn(w, 2 * w, 2),
            _conv_bn(2 * w, 4 * w, 1),
            _conv_bn(4 * w, 4 * w, 2),
            _conv_bn(4 * w, 8 * w, 1),
            _conv_bn(8 * w, 8 * w, 2),
        )
        self.embed = nn.Linear(8 * w * 4 * 4, dim)
        self.factor_head = nn.Linear(dim, n_factors)
        self.dim = dim

    def init_weights(self, generator: torch.Generator) -> ToyIdEmbedder:
        """Kaiming-normal convolutions, small-normal linears, zero biases, drawn from ``generator``."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=generator)
                elif isinstance(m, nn.Linear):
                    m.weight.normal_(0.0, 1.0 / m.in_features**0.5, generator=generator)
                    m.bias.zero_()
        return self

    @staticmethod
    def preprocess(img: Tensor) -> Tensor:
        """Check [B,3,H,W] and resize to 64x64 (bilinear, antialias) unless already that size."""
        assert img.ndim == 4 and img.shape[1] == 3, f"expected images [B,3,H,W], got {tuple(img.shape)}"
        if tuple(img.shape[-2:]) != (EMBED_SIZE, EMBED_SIZE):
            img = F.interpolate(
                img, size=(EMBED_SIZE, EMBED_SIZE), mode="bilinear", align_corners=False, antialias=True
            )
        return img

    def forward(self, img: Tensor) -> Tensor:
        x = self.trunk(self.preprocess(img))
        assert x.shape[1:] == (self.trunk[-1][0].out_channels, 4, 4), tuple(x.shape)
        return F.normalize(self.embed(x.flatten(1)), dim=1)


# ----------------------------------------------------------------------------------------------
# Loading and embedding


def _state_for_file(model: ToyIdEmbedder, dtype: torch.dtype = torch.float16) -> dict[str, Tensor]:
    return {
        k: (v.to("cpu", dtype) if v.is_floating_point() else v.cpu()).contiguous()
        for k, v in model.state_dict().items()
    }


def save_id_embedder(model: ToyIdEmbedder, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as float16 safetensors (atomically); its constructor args go in the metadata (``config``)."""
    path = Path(path)
    meta = {"format": "hrinv_nb.toy_identity.ToyIdEmbedder", "config": json.dumps(model.config)}
    meta |= {k: json.dumps(v) for k, v in (extra or {}).items()}
    save_safetensors(_state_for_file(model), path, meta)
    return path


def load_id_embedder(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> ToyIdEmbedder:
    """The trained toy embedder (default :data:`ID_EMBEDDER_PATH`) in eval mode, frozen, float32."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else ID_EMBEDDER_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"toy identity embedder not found: {path}. Regenerate it (~17 min on one CPU thread) with: "
            f"cd {REPO_ROOT} && {REBUILD_COMMAND}" + (f" --out {path}" if path != ID_EMBEDDER_PATH else "")
        )
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise ValueError(f"{path}: no 'config' metadata; not a toy identity embedder file")
    model = ToyIdEmbedder(**json.loads(meta["config"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device)


def id_embedder_fn(model: nn.Module, batch_size: int = 64) -> Callable[[Tensor], Tensor]:
    """``img [B,3,H,W] in [-1,1] -> [B, dim]`` unit-norm embeddings (batched, no grad, CPU output)."""

    def embed(img: Tensor) -> Tensor:
        assert img.ndim == 4 and img.shape[1] == 3, f"expected images [B,3,H,W], got {tuple(img.shape)}"
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, img.shape[0], batch_size):
                out.append(model(img[i : i + batch_size].to(device, torch.float32)).cpu())
        model.train(was_training)
        return torch.cat(out)

    return embed


# ----------------------------------------------------------------------------------------------
# Data


# fmt: off
def render_identity_views(n_ids: int, seed: int, size: int = EMBED_SIZE, *, device: str | torch.device = "cpu",
                          deadline: float | None = None, block: int = 0) -> dict[str, Tensor]:
# fmt: on
    """Each of ``n_ids`` random identities in every style of ``STYLES``, each view with its own nuisance.

    Returns ``images`` uint8 [m, len(STYLES), 3, size, size] and ``identity`` [m, N_IDENTITY] on
    ``device`` (factors drawn on the CPU from ``seed``, so the set is the same on every device);
    ``m = n_ids`` unless the ``perf_counter`` ``deadline`` passes: identities are rendered by blocks
    of ``block`` (0: 256 on the CPU, 2048 on CUDA) and rendering stops after the block that passes it.
    """
    device = torch.device(device)
    block = auto_setting(block, device, 256, 2048)
    generator = torch.Generator().manual_seed(seed)
    identity = sample_identity(n_ids, generator)
    nuisance = sample_nuisance(n_ids * len(STYLES), generator).view(n_ids, len(STYLES), N_NUISANCE)
    blocks = []
    for i in range(0, n_ids, block):
        rows = slice(i, min(n_ids, i + block))
        views = [
            to_uint8(render_on(identity[rows], nuisance[rows, s], style, (size, size), device))
            for s, style in enumerate(STYLES)
        ]
        blocks.append(torch.stack(views, dim=1))
        if deadline is not None and time.perf_counter() > deadline:
            break
    images = torch.cat(blocks)
    return {"images": images, "identity": identity[: images.shape[0]].to(device)}


def augment(img: Tensor, generator: torch.Generator, cpu_generator: torch.Generator | None = None) -> Tensor:
    """Mild, identity-preserving augmentation: brightness/contrast jitter, ±2 px shift, random blur.

    Per-image jitter is drawn from ``generator`` (on ``img``'s device); the batch-wide shift and blur
    choices from ``cpu_generator`` (default: ``generator``, which must then be a CPU generator), so
    that no step waits for the device.
    """
    assert img.ndim == 4 and img.shape[1] == 3, tuple(img.shape)
    cpu_generator = generator if cpu_generator is None else cpu_generator
    b = img.shape[0]
    jitter = torch.rand(2, b, 1, 1, 1, generator=generator, device=generator.device).to(img.device) * 2 - 1
    img = (img * (1.0 + 0.15 * jitter[0]) + 0.1 * jitter[1]).clamp(-1, 1)
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=cpu_generator))
    img = torch.roll(img, shifts=(dy, dx), dims=(2, 3))
    if torch.rand(1, generator=cpu_generator).item() < 0.3:  # low-resolution / blurry copy
        low = int(torch.randint(24, 49, (1,), generator=cpu_generator))
        small = F.interpolate(img, size=(low, low), mode="bilinear", align_corners=False, antialias=True)
        img = F.interpolate(small, size=img.shape[-2:], mode="bilinear", align_corners=False)
    return img


def supcon_loss(emb: Tensor, labels: Tensor, tau: float = 0.1) -> Tensor:
    """Supervised-contrastive loss of unit-norm ``emb`` [N,d] with identity ``labels`` [N] (≥2 views each)."""
    assert emb.ndim == 2 and labels.shape == (emb.shape[0],), (tuple(emb.shape), tuple(labels.shape))
    n = emb.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    logits = (emb @ emb.t() / tau).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    assert bool(positive.any(1).all()), "every sample needs a positive"
    return -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1)).mean()


# ----------------------------------------------------------------------------------------------
# Evaluation


def render_retrieval_set(
    n_ids: int = 100, per_style: int = 10, seed: int = 12345, size: int = EMBED_SIZE, device: str | torch.device = "cpu"
) -> dict[str, Tensor]:
    """Retrieval benchmark: one photo per identity, ``per_style`` renders per identity in each target style.

    Returns ``photo`` [n_ids,3,H,W], ``labels`` [n_ids*per_style] and, per target style, images
    [n_ids*per_style,3,H,W] (all float in [-1,1], images on ``device``); every render has its own
    random nuisance (factors drawn on the CPU from ``seed``).
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    identity = sample_identity(n_ids, generator)
    out = {"photo": render_on(identity, sample_nuisance(n_ids, generator), "photo", (size, size), device)}
    labels = torch.arange(n_ids).repeat_interleave(per_style)
    for style in TARGET_STYLES:
        nuisance = sample_nuisance(labels.numel(), generator)
        out[style] = render_on(identity[labels], nuisance, style, (size, size), device)
    out["labels"] = labels
    return out


def evaluate_id_retrieval(embed: Callable[[Tensor], Tensor], data: dict[str, Tensor]) -> dict[str, Any]:
    """Top-1 retrieval of each target style's renders against the photos (:func:`id_retrieval`)."""
    from hrinv_nb.retrieval import id_retrieval

    content = embed(data["photo"])
    per_style = {style: id_retrieval(content, embed(data[style]), data["labels"]) for style in TARGET_STYLES}
    return {
        "top1": {s: r["top1"] for s, r in per_style.items()},
        "top1_min": min(r["top1"] for r in per_style.values()),
        "top1_thresh": {s: r["top1_thresh"] for s, r in per_style.items()},
        "mean_min_dist": {s: r["mean_min_dist"] for s, r in per_style.items()},
        "num_contents": int(data["photo"].shape[0]),
        "n_per_style": int(data["labels"].numel()),
    }


# ----------------------------------------------------------------------------------------------
# Training


def _one_cycle(progress: float, lr: float, warmup: float = 0.1) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to 0 (as OneCycleLR)."""
    if progress < warmup:
        return lr * max(progress / warmup, 0.04)
    return lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup) / (1 - warmup))))


# fmt: off
def train_id_embedder(out_path: str | os.PathLike = ID_EMBEDDER_PATH, steps: int = 2000, seed: int = 0, *,
                      ids_per_batch: int = 0, n_ids: int = 0, lr: float = 2e-3, weight_decay: float = 5e-4,
                      tau: float = 0.1, factor_weight: float = 0.5, width: int = 32, dim: int = 128,
                      eval_ids: int = 100, eval_per_style: int = 10, device: str = "cpu",
                      time_budget_s: float | None = None, work_dir: str | os.PathLike | None = WORK_DIR,
                      progress: bool = True) -> dict[str, Any]:
# fmt: on
    """Train the embedder on ``n_ids`` identities x 4 styles (64²), save it with its provenance JSON, measure retrieval.

    ``ids_per_batch`` / ``n_ids`` 0: 32 / 4000 on the CPU, 64 / 40000 on CUDA. Renders on ``device``.
    With ``time_budget_s`` the whole call stays near that many seconds: the retrieval benchmark is
    rendered first, the training pool stops growing at 35% of the budget (a pool cut short is not
    cached), training at 90%; the asset and provenance (``steps_done``, seconds) are written either way.
    Deterministic from ``seed`` on a given device (data: ``seed*1000+11``; init: ``seed``; batches and
    augmentation: ``seed+7``; the benchmark: its own fixed seed 12345 + ``seed``). Each step takes
    ``ids_per_batch`` identities with all their views; bfloat16 autocast on CUDA. Retrieval is
    measured on the saved (float16) file. Returns the provenance dict.
    """
    from tqdm.auto import tqdm

    budget = Budget(time_budget_s)
    dev = torch.device(device)
    out_path = Path(out_path)
    ids_per_batch = auto_setting(ids_per_batch, dev, 32, 64)
    n_ids = auto_setting(n_ids, dev, 4000, 40000)
    assert steps >= 1 and 2 <= ids_per_batch <= n_ids, (steps, ids_per_batch, n_ids)
    bench = render_retrieval_set(eval_ids, eval_per_style, seed=12345 + seed, device=dev)
    name = f"idemb_train_s{EMBED_SIZE}_n{n_ids}_seed{seed}"
    deadline = budget.deadline(0.35)
    data = cached_dataset(
        name,
        lambda: render_identity_views(n_ids, seed * 1000 + 11, device=dev, deadline=deadline),
        work_dir,
        n_ids,
        dev,
    )
    render_seconds = budget.spent()
    n_have, n_views = data["images"].shape[:2]
    assert data["images"].shape == (n_have, n_views, 3, EMBED_SIZE, EMBED_SIZE), tuple(data["images"].shape)
    ids_per_batch = min(ids_per_batch, n_have)

    model = ToyIdEmbedder(width=width, dim=dim).init_weights(torch.Generator().manual_seed(seed)).to(dev).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    cpu_generator = torch.Generator().manual_seed(seed + 7)
    dev_generator = torch.Generator(device=dev).manual_seed(seed + 7)
    perm, cursor = torch.randperm(n_have, generator=cpu_generator).to(dev), 0
    labels = torch.arange(ids_per_batch, device=dev).repeat_interleave(n_views)
    train_deadline = budget.deadline(0.9)
    t1 = time.perf_counter()
    span = None if train_deadline is None else max(1e-3, train_deadline - t1)
    running: dict[str, Tensor] = {}
    bar = tqdm(total=steps, desc="toy ID embedder", disable=not progress, mininterval=5.0)
    step = 0
    while step < steps:
        now = time.perf_counter()
        if train_deadline is not None and now > train_deadline and step > 0:
            break
        frac = step / steps if span is None else max(step / steps, (now - t1) / span)
        for group in opt.param_groups:
            group["lr"] = _one_cycle(frac, lr)
        if cursor + ids_per_batch > n_have:
            perm, cursor = torch.randperm(n_have, generator=cpu_generator).to(dev), 0
        ids = perm[cursor : cursor + ids_per_batch]
        cursor += ids_per_batch
        img = augment(from_uint8(data["images"][ids].flatten(0, 1)), dev_generator, cpu_generator)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            emb = model(img)
        emb = emb.float()
        con = supcon_loss(emb, labels, tau)
        reg = F.mse_loss(model.factor_head(emb), data["identity"][ids].repeat_interleave(n_views, 0)) / _VAR_UNIFORM
        loss = con + factor_weight * reg
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        parts = {"con": con.detach(), "reg": reg.detach()}
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in parts.items()}
        step += 1
        bar.update(1)
        if step % 100 == 0 or step == 1:  # the only host synchronisations of the loop
            values = {k: v.item() for k, v in running.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"toy ID embedder training diverged at step {step}: {values}")
            bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)
    bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    train_seconds = time.perf_counter() - t1

    save_id_embedder(model.eval(), out_path, {"seed": seed, "steps": step})
    t2 = time.perf_counter()
    metrics = evaluate_id_retrieval(id_embedder_fn(load_id_embedder(out_path, device=dev), batch_size=256), bench)
    eval_seconds = time.perf_counter() - t2
    provenance = {
        "asset": "toy identity embedder (hrinv_nb.toy_identity.ToyIdEmbedder, float16)",
        "config": model.config,
        "n_params": sum(p.numel() for p in model.parameters()),
        "seed": seed,
        "steps": steps,
        "steps_done": step,
        "time_budget_s": time_budget_s,
        "ids_per_batch": ids_per_batch,
        "views_per_id": int(n_views),
        "n_ids_requested": n_ids,
        "n_ids": int(n_have),
        "lr": lr,
        "weight_decay": weight_decay,
        "tau": tau,
        "factor_weight": factor_weight,
        "device": str(dev),
        "render_seconds": round(render_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "final_train_loss_parts": {k: round(v.item(), 4) for k, v in running.items()},
        "retrieval": metrics,
        "retrieval_benchmark": f"{eval_ids} identities: 1 photo each vs {eval_per_style} "
        f"renders per identity in each of {list(TARGET_STYLES)}, random nuisances, seed {12345 + seed}",
        "renderer_fingerprint": renderer_fingerprint(),
        "size_bytes": out_path.stat().st_size,
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "training_seconds": round(budget.spent(), 1),  # all of it: render, train, evaluate, save
    }
    write_provenance(out_path, provenance)
    return provenance


# The training options the command line exposes (flags and types come from train_id_embedder's defaults).
_CLI_OPTIONS = ("steps", "seed", "ids_per_batch", "n_ids", "lr", "eval_ids", "eval_per_style", "device")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI: (re)build the toy identity embedder and write its JSON provenance next to it."""
    return rebuild_main(train_id_embedder, argv, out_default=ID_EMBEDDER_PATH, options=_CLI_OPTIONS, report="retrieval")


if __name__ == "__main__":
    main()
