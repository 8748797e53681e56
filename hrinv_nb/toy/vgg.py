"""A toy "ImageNet-pretrained" VGG16: timm's ``vgg16`` conv trunk trained on 32x32 toy renders.

No real ImageNet weights exist in this project's world, so the perceptual losses get a stand-in:
the full-width VGG16 trunk (``features.0`` ... ``features.30``: 13 convolutions 64-128-256-512-512,
no BatchNorm) is trained from a Kaiming initialisation on renders of :mod:`hrinv_nb.toy.render` at
**32x32** - the toy analogue of ImageNet pretraining at 224x224 - and then used by the losses at
64x64 and above, so the scale mismatch the paper studies (Table II) exists in the toy world too.
BatchNorm-free VGG16 learns slowly from scratch, so a BatchNorm follows each convolution during
training only; it is folded into the convolutions before saving (an exact re-parametrisation, see
:meth:`VGGPretrainNet.fold_batchnorm`), so the shipped network is the plain ``vgg16`` trunk.

Pretraining task (supervised multi-task, random identities, nuisances and styles): from one render,

* classify its style (4 classes of ``STYLES``, cross-entropy);
* regress all ``N_IDENTITY`` identity factors (the un-exaggerated ones, also for caricatures);
* regress the nuisance factors ``NUISANCE_TARGETS`` (lighting direction, background lightness, pose).

Head: global average pooling after ``features.30`` and one linear layer (not shipped). Inputs are
normalised exactly as the project's VGG losses do (:func:`hrinv_nb.losses.imagenet_normalise`).
Only the trunk is saved, with timm key names ``features.{i}.weight/bias`` in float16 safetensors,
so ``perceptual_loss('vgg16_conv', weights=TOY_VGG_PATH)`` loads it with the code used for real
weights. Rebuild it with ``python -m hrinv_nb.toy.vgg`` (writes the weights and a JSON provenance).
"""

from __future__ import annotations

import hashlib
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

from hrinv_nb.torch_files import load_torch_file
from hrinv_nb.toy.rebuild import rebuild_main
from hrinv_nb.toy.render import N_IDENTITY, NUISANCE_FACTORS, STYLES, render, sample_identity, sample_nuisance

__all__ = [
    "DATA_DIR",
    "WORK_DIR",
    "TOY_VGG_PATH",
    "TOY_VGG_JSON",
    "PRETRAIN_SIZE",
    "NUISANCE_TARGETS",
    "REBUILD_COMMAND",
    "load_toy_vgg_path",
    "renderer_fingerprint",
    "render_factor_dataset",
    "cache_path",
    "cached_dataset",
    "to_uint8",
    "from_uint8",
    "render_grouped",
    "VGGPretrainNet",
    "split_outputs",
    "pretrain_loss",
    "evaluate_pretraining",
    "trunk_state_dict",
    "train_toy_vgg",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
WORK_DIR = DATA_DIR / "_work"  # gitignored cache of pre-rendered training sets
TOY_VGG_PATH = DATA_DIR / "vgg16_toy.safetensors"
TOY_VGG_JSON = TOY_VGG_PATH.with_suffix(".json")
REBUILD_COMMAND = "PYTHONPATH=. python -m hrinv_nb.toy.vgg"
PRETRAIN_SIZE = 32
NUISANCE_TARGETS: tuple[str, ...] = (
    "light_azimuth",
    "light_elevation",
    "background_lightness",
    "pose_shift_x",
    "pose_shift_y",
    "pose_tilt",
)
_NUISANCE_INDEX = [NUISANCE_FACTORS.index(name) for name in NUISANCE_TARGETS]
_RENDER_SOURCES = ("render.py", "render_geometry.py", "render_shading.py", "render_styles.py")
_VAR_UNIFORM = 1.0 / 3.0  # variance of a factor uniform in [-1, 1]: turns an MSE into 1 - R²


# ----------------------------------------------------------------------------------------------
# Paths


def load_toy_vgg_path(path: str | os.PathLike | None = None) -> Path:
    """The toy VGG16 trunk file (default :data:`TOY_VGG_PATH`); a clear error if it is missing."""
    path = Path(path) if path is not None else TOY_VGG_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"toy VGG16 weights not found: {path}. Regenerate them (~20 min on one CPU thread) with: "
            f"cd {REPO_ROOT} && {REBUILD_COMMAND}" + (f" --out {path}" if path != TOY_VGG_PATH else "")
        )
    return path


# ----------------------------------------------------------------------------------------------
# Pre-rendered data sets (shared with hrinv_nb.toy.identity)


def renderer_fingerprint() -> str:
    """Short hash of the renderer's source files: a cached data set is stale when it changes."""
    digest = hashlib.sha1()
    here = Path(__file__).resolve().parent
    for name in _RENDER_SOURCES:
        file = here / name
        digest.update(file.read_bytes() if file.is_file() else b"")
    return digest.hexdigest()[:10]


def to_uint8(img: Tensor) -> Tensor:
    """[-1, 1] float images -> uint8 (storage of pre-rendered sets)."""
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(img: Tensor) -> Tensor:
    """uint8 images -> float32 in [-1, 1]."""
    return img.float() / 127.5 - 1.0


def render_grouped(identity: Tensor, nuisance: Tensor, style: Tensor, size: int, chunk: int = 256) -> Tensor:
    """Render each row in its own style (``style`` [n] indexes ``STYLES``) -> uint8 [n, 3, size, size]."""
    n = identity.shape[0]
    assert identity.shape == (n, N_IDENTITY) and nuisance.shape == (n, len(NUISANCE_FACTORS)), "factor shapes"
    assert style.shape == (n,), style.shape
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for s, name in enumerate(STYLES):
        idx = (style == s).nonzero().flatten()
        for i in range(0, idx.numel(), chunk):
            rows = idx[i : i + chunk]
            out[rows] = to_uint8(render(identity[rows], nuisance[rows], style=name, size=(size, size)))
    return out


def render_factor_dataset(n: int, seed: int, size: int = PRETRAIN_SIZE) -> dict[str, Tensor]:
    """``n`` renders of random identities and nuisances, each in a random style (uniform over ``STYLES``).

    Returns ``images`` uint8 [n,3,size,size], ``style`` long [n], ``identity`` [n, N_IDENTITY] and
    ``nuisance`` [n, N_NUISANCE], all drawn from ``torch.Generator().manual_seed(seed)``.
    """
    generator = torch.Generator().manual_seed(seed)
    identity = sample_identity(n, generator)
    nuisance = sample_nuisance(n, generator)
    style = torch.randint(len(STYLES), (n,), generator=generator)
    images = render_grouped(identity, nuisance, style, size)
    return {"images": images, "style": style, "identity": identity, "nuisance": nuisance}


def cache_path(name: str, work_dir: str | os.PathLike) -> Path:
    """Where :func:`cached_dataset` keeps the set ``name`` for the current renderer."""
    return Path(work_dir) / f"{name}_r{renderer_fingerprint()}.pt"


def cached_dataset(name: str, builder: Callable[[], dict[str, Tensor]], work_dir: Path | None) -> dict[str, Tensor]:
    """Load ``work_dir/<name>_<renderer fingerprint>.pt`` or build it with ``builder`` and save it.

    ``work_dir=None`` disables the cache. The fingerprint makes a renderer change invalidate it.
    """
    if work_dir is None:
        return builder()
    path = cache_path(name, work_dir)
    if path.is_file():
        return load_torch_file(path, map_location="cpu")
    data = builder()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(data, tmp)
    tmp.replace(path)
    return data


# ----------------------------------------------------------------------------------------------
# Network


class VGGPretrainNet(nn.Module):
    """timm VGG16 trunk (``features``, Kaiming-initialised from ``seed``) + GAP + linear multi-task head.

    VGG16 has no BatchNorm and trains slowly from scratch, so during pretraining a ``BatchNorm2d``
    (``norms[str(i)]``) follows every convolution ``features.i``. :meth:`fold_batchnorm` then merges
    each BatchNorm's running statistics and affine parameters into its convolution, which leaves an
    exactly equivalent plain (BN-free) ``vgg16`` trunk: the shipped architecture is unchanged.
    ``head`` reads the globally average-pooled output of ``features.30`` (it is not shipped).
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        from hrinv_nb.losses import vgg16_trunk

        self.features = vgg16_trunk(30, seed=seed).requires_grad_(True).train()
        self.norms = nn.ModuleDict(
            {
                str(i): nn.BatchNorm2d(layer.out_channels)
                for i, layer in enumerate(self.features)
                if isinstance(layer, nn.Conv2d)
            }
        )
        self.n_outputs = len(STYLES) + N_IDENTITY + len(NUISANCE_TARGETS)
        self.head = nn.Linear(512, self.n_outputs)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 512**-0.5, generator=generator)
            self.head.bias.zero_()

    @torch.no_grad()
    def fold_batchnorm(self) -> VGGPretrainNet:
        """Merge every BatchNorm (running statistics) into the preceding conv and drop it; in place."""
        for key, bn in self.norms.items():
            conv = self.features[int(key)]
            assert isinstance(conv, nn.Conv2d) and conv.out_channels == bn.num_features, key
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
        self.norms = nn.ModuleDict()
        return self

    def forward(self, img: Tensor) -> Tensor:
        """Images [B,3,H,W] in [-1,1] -> raw outputs [B, n_outputs] (style logits, identity, nuisances)."""
        from hrinv_nb.losses import imagenet_normalise

        assert img.ndim == 4 and img.shape[1] == 3, tuple(img.shape)
        x = imagenet_normalise(img)
        for i, layer in enumerate(self.features):
            x = layer(x)
            if str(i) in self.norms:
                x = self.norms[str(i)](x)
        assert x.shape[1] == 512, tuple(x.shape)
        return self.head(x.mean(dim=(2, 3)))


def split_outputs(out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Raw head outputs -> (style logits [B,4], identity [B,N_IDENTITY], nuisance targets [B,k])."""
    k = len(STYLES)
    return out[:, :k], out[:, k : k + N_IDENTITY], out[:, k + N_IDENTITY :]


def pretrain_loss(out: Tensor, style: Tensor, identity: Tensor, nuisance: Tensor) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy on style + (1 - R²)-scaled MSE on identity factors + half of it on nuisances."""
    logits, id_pred, nu_pred = split_outputs(out)
    ce = F.cross_entropy(logits, style)
    mse_id = F.mse_loss(id_pred, identity) / _VAR_UNIFORM
    mse_nu = F.mse_loss(nu_pred, nuisance[:, _NUISANCE_INDEX]) / _VAR_UNIFORM
    loss = ce + mse_id + 0.5 * mse_nu
    return loss, {"ce": ce.item(), "id": mse_id.item(), "nu": mse_nu.item()}


@torch.no_grad()
def evaluate_pretraining(net: VGGPretrainNet, data: dict[str, Tensor], batch_size: int = 128) -> dict[str, Any]:
    """Held-out metrics: style accuracy, R² and mean absolute error of identity / nuisance regression."""
    was_training = net.training
    net.eval()
    outs = [net(from_uint8(data["images"][i : i + batch_size])) for i in range(0, data["images"].shape[0], batch_size)]
    net.train(was_training)
    logits, id_pred, nu_pred = split_outputs(torch.cat(outs))

    def r2(pred: Tensor, target: Tensor) -> Tensor:
        return 1.0 - (pred - target).square().mean(0) / target.var(0, unbiased=False).clamp_min(1e-8)

    nu_target = data["nuisance"][:, _NUISANCE_INDEX]
    id_r2 = r2(id_pred, data["identity"])
    per_style = {
        name: (logits.argmax(1)[data["style"] == s] == s).float().mean().item() for s, name in enumerate(STYLES)
    }
    return {
        "n": int(logits.shape[0]),
        "style_accuracy": (logits.argmax(1) == data["style"]).float().mean().item(),
        "style_accuracy_per_style": per_style,
        "identity_r2_mean": id_r2.mean().item(),
        "identity_r2_min": id_r2.min().item(),
        "identity_mae": (id_pred - data["identity"]).abs().mean().item(),
        "nuisance_r2_mean": r2(nu_pred, nu_target).mean().item(),
        "nuisance_mae": (nu_pred - nu_target).abs().mean().item(),
    }


def trunk_state_dict(net: VGGPretrainNet, dtype: torch.dtype = torch.float16) -> dict[str, Tensor]:
    """The trunk's weights with timm key names ``features.{i}.weight/bias`` (head dropped)."""
    state = {f"features.{k}": v.detach().to(dtype).contiguous() for k, v in net.features.state_dict().items()}
    assert len(state) == 26, f"VGG16 has 13 convolutions, got {len(state) // 2}"
    return state


# ----------------------------------------------------------------------------------------------
# Training


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


# fmt: off
def train_toy_vgg(out_path: str | os.PathLike, steps: int = 1200, seed: int = 0, *, batch_size: int = 48,
                  lr: float = 1e-3, weight_decay: float = 1e-4, n_train: int = 12000, n_val: int = 1000,
                  size: int = PRETRAIN_SIZE, work_dir: str | os.PathLike | None = WORK_DIR,
                  progress: bool = True) -> dict[str, Any]:
# fmt: on
    """Pretrain the VGG16 trunk on ``n_train`` renders at ``size``² and save it to ``out_path``.

    Deterministic from ``seed`` (data: seeds ``seed*1000+1`` / ``+2``; init: ``seed``; batches:
    ``seed+7``). The training and validation sets are pre-rendered once and cached in ``work_dir``
    (``None``: no cache). AdamW with linear warm-up and cosine decay, gradient-norm clipping at 5.
    After training the BatchNorms are folded and the held-out metrics are measured on the float16
    trunk that is saved. Returns a provenance dict (settings, seconds, held-out metrics, file size).
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    assert steps >= 1 and batch_size >= 2 and n_train >= batch_size, (steps, batch_size, n_train)
    out_path = Path(out_path)
    work = Path(work_dir) if work_dir is not None else None
    t0 = time.perf_counter()
    names = (f"vgg_train_s{size}_n{n_train}_seed{seed}", f"vgg_val_s{size}_n{n_val}_seed{seed}")
    from_cache = work is not None and all(cache_path(name, work).is_file() for name in names)
    train = cached_dataset(names[0], lambda: render_factor_dataset(n_train, seed * 1000 + 1, size), work)
    val = cached_dataset(names[1], lambda: render_factor_dataset(n_val, seed * 1000 + 2, size), work)
    render_seconds = time.perf_counter() - t0

    net = VGGPretrainNet(seed)
    params = [p for p in net.parameters() if p.requires_grad]
    decay = [p for name, p in net.named_parameters() if p.ndim > 1]  # no weight decay on biases and BN
    no_decay = [p for name, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, weight_decay=weight_decay
    )
    generator = torch.Generator().manual_seed(seed + 7)
    perm, cursor = torch.randperm(n_train, generator=generator), 0
    warmup = max(1, min(100, steps // 10))
    t1 = time.perf_counter()
    bar = tqdm(range(steps), desc="toy VGG16", disable=not progress, mininterval=5.0)
    running: dict[str, float] = {}
    for step in bar:
        if cursor + batch_size > n_train:
            perm, cursor = torch.randperm(n_train, generator=generator), 0
        idx = perm[cursor : cursor + batch_size]
        cursor += batch_size
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        out = net(from_uint8(train["images"][idx]))
        loss, parts = pretrain_loss(out, train["style"][idx], train["identity"][idx], train["nuisance"][idx])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"toy VGG16 pretraining diverged at step {step}: loss {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in parts.items()}
        bar.set_postfix({k: f"{v:.3f}" for k, v in running.items()}, refresh=False)
    train_seconds = time.perf_counter() - t1
    net.eval()
    metrics_bn = evaluate_pretraining(net, val)
    probe = from_uint8(val["images"][:64])
    with torch.no_grad():
        before = net(probe)
        net.fold_batchnorm()
        folded = net(probe)
        shipped = trunk_state_dict(net)  # float16: evaluate exactly what is saved
        net.features.load_state_dict({k[len("features.") :]: v.float() for k, v in shipped.items()})
        after = net(probe)
    metrics = evaluate_pretraining(net, val)

    provenance: dict[str, Any] = {
        "asset": "toy VGG16 trunk (timm vgg16 features.0-30, float16)",
        "task": "style classification (4) + regression of all identity factors and "
        f"{list(NUISANCE_TARGETS)} from a {size}x{size} render; head: GAP + linear (not shipped)",
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "batchnorm": "BatchNorm2d after each conv during training, folded into the convs before saving",
        "n_train": n_train,
        "n_val": n_val,
        "size": size,
        "render_seconds": round(render_seconds, 1),
        "data_from_cache": from_cache,
        "train_seconds": round(train_seconds, 1),
        "final_train_loss_parts": {k: round(v, 4) for k, v in running.items()},
        "heldout": metrics,
        "heldout_before_folding_fp32": metrics_bn,
        "fold_max_abs_diff": (folded - before).abs().max().item(),
        "fp16_max_abs_diff": (after - folded).abs().max().item(),
        "renderer_fingerprint": renderer_fingerprint(),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "timm vgg16 trunk",
        "provenance": json.dumps({k: provenance[k] for k in ("seed", "steps", "size", "heldout")}),
    }
    save_file(shipped, str(out_path), metadata=meta)
    provenance["size_bytes"] = out_path.stat().st_size
    provenance["training_seconds"] = round(time.perf_counter() - t0, 1)  # all of it: render, train, evaluate
    return provenance


# The training options the command line exposes (flags and types come from train_toy_vgg's defaults).
_CLI_OPTIONS = ("steps", "seed", "batch_size", "lr", "n_train", "n_val")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI: (re)build the toy VGG16 trunk and write its JSON provenance next to it."""
    return rebuild_main(train_toy_vgg, argv, out_default=TOY_VGG_PATH, options=_CLI_OPTIONS, report="heldout")


if __name__ == "__main__":
    main()
