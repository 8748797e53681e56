"""A toy "ImageNet-pretrained" VGG16: a narrow timm ``vgg16`` trunk trained on 32x32 toy renders.

No real ImageNet weights exist in this project's world, so the perceptual losses get a stand-in:
timm's VGG16 trunk (``features.0`` ... ``features.30``: the same 13 convolutions, ReLUs, max-pools
and layer indices, no BatchNorm) at a quarter of the width (:data:`TOY_VGG_WIDTHS` 16-32-64-128-128
instead of 64-128-256-512-512, so that a full-resolution loss at 128x128 is cheap on a CPU), trained
from a Kaiming initialisation on renders of :mod:`hrinv_nb.toy.render` at **32x32** - the toy
analogue of ImageNet pretraining at 224x224 - and then used by the losses at 128x128, so the scale
gap the paper studies (Table II: 1024² images, a network pretrained at 224²) exists in the toy world.
BatchNorm-free VGG16 learns slowly from scratch, so a BatchNorm follows each convolution during
training only; it is folded into the convolutions before saving (an exact re-parametrisation, see
:meth:`VGGPretrainNet.fold_batchnorm`), so the shipped network is a plain VGG16 trunk.

Pretraining task (supervised multi-task, random identities, nuisances and styles): from one render,

* classify its style (4 classes of ``STYLES``, cross-entropy);
* regress all ``N_IDENTITY`` identity factors (the un-exaggerated ones, also for caricatures);
* regress the nuisance factors ``NUISANCE_TARGETS`` (lighting direction, background lightness, pose).

Head: global average pooling after ``features.30`` and one linear layer, shipped as ``head.weight`` /
``head.bias`` (keys the loss loader skips, like timm's own ``head.*``): :func:`style_classifier` uses
it as the toy world's style classifier. The trunk has timm key names ``features.{i}.weight/bias``
(float16 safetensors), so ``perceptual_loss('vgg16_conv', weights=TOY_VGG_PATH)`` loads it with the
code used for real weights (the widths are read from the weight shapes). Rebuild it with
``python -m hrinv_nb.toy.vgg`` (writes the weights and a JSON provenance), or call
:func:`train_toy_vgg` with ``device='cuda', time_budget_s=...``.

The training helpers here (pre-rendered data sets on a device, wall-clock budgets, the multi-task
loop) are shared with :mod:`hrinv_nb.toy.resnet` and :mod:`hrinv_nb.toy.identity`.
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

from hrinv_nb.files import atomic_write
from hrinv_nb.torch_files import load_torch_file
from hrinv_nb.toy.rebuild import rebuild_main
from hrinv_nb.toy.render import N_IDENTITY, NUISANCE_FACTORS, STYLES, render, sample_identity, sample_nuisance

__all__ = [
    "DATA_DIR",
    "WORK_DIR",
    "TOY_VGG_PATH",
    "TOY_VGG_JSON",
    "TOY_VGG_WIDTHS",
    "PRETRAIN_SIZE",
    "NUISANCE_TARGETS",
    "REBUILD_COMMAND",
    "load_toy_vgg_path",
    "renderer_fingerprint",
    "Budget",
    "auto_setting",
    "render_on",
    "save_safetensors",
    "render_factor_dataset",
    "cache_path",
    "cached_dataset",
    "pretraining_sets",
    "to_uint8",
    "from_uint8",
    "render_grouped",
    "VGGPretrainNet",
    "split_outputs",
    "pretrain_loss",
    "evaluate_pretraining",
    "pretrain_multitask",
    "trunk_state_dict",
    "load_style_head",
    "style_classifier",
    "evaluate_style_classifier",
    "write_provenance",
    "train_toy_vgg",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
WORK_DIR = DATA_DIR / "_work"  # gitignored cache of pre-rendered training sets
TOY_VGG_PATH = DATA_DIR / "vgg16_toy.safetensors"
TOY_VGG_JSON = TOY_VGG_PATH.with_suffix(".json")
TOY_VGG_WIDTHS = (16, 32, 64, 128, 128)  # per stage; timm's vgg16: 64, 128, 256, 512, 512
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
_VAR_UNIFORM = 1.0 / 3.0  # variance of a factor uniform in [-1, 1]: turns an MSE into 1 - R²
_RENDER_BLOCK = 4096  # renders per block of a pre-rendered set (the budget is checked between blocks)


# ----------------------------------------------------------------------------------------------
# Paths, devices, budgets


def load_toy_vgg_path(path: str | os.PathLike | None = None) -> Path:
    """The toy VGG16 trunk file (default :data:`TOY_VGG_PATH`); a clear error if it is missing."""
    path = Path(path) if path is not None else TOY_VGG_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"toy VGG16 weights not found: {path}. Regenerate them with: "
            f"cd {REPO_ROOT} && {REBUILD_COMMAND}" + (f" --out {path}" if path != TOY_VGG_PATH else "")
        )
    return path


def auto_setting(value: int, device: torch.device, cpu: int, cuda: int) -> int:
    """``value``, or where it is 0 the default for ``device`` (``cuda`` on a GPU, else ``cpu``)."""
    return value if value > 0 else (cuda if device.type == "cuda" else cpu)


class Budget:
    """A wall-clock budget started at construction; ``None`` seconds: unlimited.

    ``deadline(fraction)`` is the ``perf_counter`` time by which that fraction of the budget is spent
    (``None`` when unlimited); ``spent()`` the seconds since the start.
    """

    def __init__(self, seconds: float | None) -> None:
        assert seconds is None or seconds > 0, seconds
        self.seconds = seconds
        self.start = time.perf_counter()

    def deadline(self, fraction: float = 1.0) -> float | None:
        return None if self.seconds is None else self.start + fraction * self.seconds

    def spent(self) -> float:
        return time.perf_counter() - self.start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------
# Pre-rendered data sets (shared with hrinv_nb.toy.resnet and hrinv_nb.toy.identity)


def renderer_fingerprint() -> str:
    """Short hash of the renderer's source files (``render*.py``): a cached data set is stale when it changes."""
    digest = hashlib.sha1()
    for file in sorted(Path(__file__).resolve().parent.glob("render*.py")):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:10]


def to_uint8(img: Tensor) -> Tensor:
    """[-1, 1] float images -> uint8 (storage of pre-rendered sets)."""
    return ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(img: Tensor) -> Tensor:
    """uint8 images -> float32 in [-1, 1]."""
    return img.float() / 127.5 - 1.0


def render_on(identity: Tensor, nuisance: Tensor, style: str, size: tuple[int, int], device: torch.device) -> Tensor:
    """``render`` with the factors on ``device``; the result is moved to ``device`` whatever the renderer returns.

    On CUDA the renderer gets 32x its default pixels per internal chunk (fewer, larger kernels).
    """
    device = torch.device(device)
    chunk_pixels = 1 << 23 if device.type == "cuda" else 1 << 18
    img = render(identity.to(device), nuisance.to(device), style=style, size=size, chunk_pixels=chunk_pixels)
    assert img.shape == (identity.shape[0], 3, *size), tuple(img.shape)
    return img.to(device)


# fmt: off
def render_grouped(identity: Tensor, nuisance: Tensor, style: Tensor, size: int, chunk: int = 0,
                   device: str | torch.device = "cpu") -> Tensor:
# fmt: on
    """Render each row in its own style (``style`` [n] indexes ``STYLES``) -> uint8 [n, 3, size, size] on ``device``.

    ``chunk`` rows per ``render`` call (0: 512 on the CPU, 4096 on CUDA).
    """
    n = identity.shape[0]
    assert identity.shape == (n, N_IDENTITY) and nuisance.shape == (n, len(NUISANCE_FACTORS)), "factor shapes"
    assert style.shape == (n,), style.shape
    device = torch.device(device)
    chunk = auto_setting(chunk, device, 512, 4096)
    style = style.cpu()
    out = torch.empty(n, 3, size, size, dtype=torch.uint8, device=device)
    for s, name in enumerate(STYLES):
        idx = (style == s).nonzero().flatten()
        for i in range(0, idx.numel(), chunk):
            rows = idx[i : i + chunk]
            out[rows.to(device)] = to_uint8(render_on(identity[rows], nuisance[rows], name, (size, size), device))
    return out


# fmt: off
def render_factor_dataset(n: int, seed: int, size: int = PRETRAIN_SIZE, *, device: str | torch.device = "cpu",
                          deadline: float | None = None) -> dict[str, Tensor]:
# fmt: on
    """``n`` renders of random identities and nuisances, each in a random style (uniform over ``STYLES``).

    Returns ``images`` uint8 [m,3,size,size], ``style`` long [m], ``identity`` [m, N_IDENTITY] and
    ``nuisance`` [m, N_NUISANCE] on ``device``, all drawn from ``torch.Generator().manual_seed(seed)``
    (on the CPU, so the set is the same on every device). ``m = n`` unless the ``perf_counter``
    ``deadline`` passes: rendering goes by blocks of 4096 and stops after the block that passes it.
    """
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    identity = sample_identity(n, generator)
    nuisance = sample_nuisance(n, generator)
    style = torch.randint(len(STYLES), (n,), generator=generator)
    blocks = []
    for i in range(0, n, _RENDER_BLOCK):
        rows = slice(i, min(n, i + _RENDER_BLOCK))
        blocks.append(render_grouped(identity[rows], nuisance[rows], style[rows], size, device=device))
        if deadline is not None and time.perf_counter() > deadline:
            break
    images = torch.cat(blocks)
    m = images.shape[0]
    return {
        "images": images,
        "style": style[:m].to(device),
        "identity": identity[:m].to(device),
        "nuisance": nuisance[:m].to(device),
    }


def cache_path(name: str, work_dir: str | os.PathLike) -> Path:
    """Where :func:`cached_dataset` keeps the set ``name`` for the current renderer."""
    return Path(work_dir) / f"{name}_r{renderer_fingerprint()}.pt"


# fmt: off
def cached_dataset(name: str, builder: Callable[[], dict[str, Tensor]], work_dir: str | os.PathLike | None,
                   expected: int | None = None, device: str | torch.device = "cpu") -> dict[str, Tensor]:
# fmt: on
    """Load ``work_dir/<name>_<renderer fingerprint>.pt`` or build it with ``builder`` and save it.

    ``work_dir=None`` disables the cache. The fingerprint makes a renderer change invalidate it. A set
    whose ``images`` have fewer than ``expected`` rows (cut short by a time budget) is not cached.
    The tensors are returned on ``device``. Only CPU runs use the cache (``device`` CUDA: no cache;
    a GPU renders the set faster than it would be saved and loaded).
    """
    device = torch.device(device)
    if work_dir is None or device.type != "cpu":
        return {k: v.to(device) for k, v in builder().items()}
    path = cache_path(name, work_dir)
    if path.is_file():
        return {k: v.to(device) for k, v in load_torch_file(path, map_location="cpu").items()}
    data = builder()
    if expected is None or data["images"].shape[0] >= expected:
        cpu = {k: v.cpu() for k, v in data.items()}
        atomic_write(path, lambda tmp: torch.save(cpu, tmp))
    return {k: v.to(device) for k, v in data.items()}


# ----------------------------------------------------------------------------------------------
# Network


class VGGPretrainNet(nn.Module):
    """VGG16 trunk (``features``, ``widths`` per stage, Kaiming-initialised from ``seed``) + GAP + linear head.

    VGG16 has no BatchNorm and trains slowly from scratch, so during pretraining a ``BatchNorm2d``
    (``norms[str(i)]``) follows every convolution ``features.i``. :meth:`fold_batchnorm` then merges
    each BatchNorm's running statistics and affine parameters into its convolution, which leaves an
    exactly equivalent plain (BN-free) VGG16 trunk. ``head`` reads the globally average-pooled
    output of ``features.30``.
    """

    def __init__(self, seed: int, widths: Sequence[int] = TOY_VGG_WIDTHS) -> None:
        super().__init__()
        from hrinv_nb.losses import vgg16_trunk

        self.widths = tuple(int(w) for w in widths)
        self.features = vgg16_trunk(30, seed=seed, widths=self.widths).requires_grad_(True).train()
        self.norms = nn.ModuleDict(
            {
                str(i): nn.BatchNorm2d(layer.out_channels)
                for i, layer in enumerate(self.features)
                if isinstance(layer, nn.Conv2d)
            }
        )
        self.n_outputs = len(STYLES) + N_IDENTITY + len(NUISANCE_TARGETS)
        self.head = nn.Linear(self.widths[-1], self.n_outputs)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            self.head.weight.normal_(0.0, self.widths[-1] ** -0.5, generator=generator)
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
        assert x.shape[1] == self.widths[-1], tuple(x.shape)
        return self.head(x.mean(dim=(2, 3)))


def split_outputs(out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Raw head outputs -> (style logits [B,4], identity [B,N_IDENTITY], nuisance targets [B,k])."""
    k = len(STYLES)
    assert out.ndim == 2 and out.shape[1] == k + N_IDENTITY + len(NUISANCE_TARGETS), tuple(out.shape)
    return out[:, :k], out[:, k : k + N_IDENTITY], out[:, k + N_IDENTITY :]


def pretrain_loss(out: Tensor, style: Tensor, identity: Tensor, nuisance: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy on style + (1 - R²)-scaled MSE on identity factors + half of it on nuisances.

    Returns the loss and its detached parts (tensors: no device synchronisation).
    """
    logits, id_pred, nu_pred = split_outputs(out.float())
    ce = F.cross_entropy(logits, style)
    mse_id = F.mse_loss(id_pred, identity) / _VAR_UNIFORM
    mse_nu = F.mse_loss(nu_pred, nuisance[:, _NUISANCE_INDEX]) / _VAR_UNIFORM
    loss = ce + mse_id + 0.5 * mse_nu
    return loss, {"ce": ce.detach(), "id": mse_id.detach(), "nu": mse_nu.detach()}


@torch.no_grad()
def evaluate_pretraining(net: nn.Module, data: dict[str, Tensor], batch_size: int = 256) -> dict[str, Any]:
    """Held-out metrics: style accuracy, R² and mean absolute error of identity / nuisance regression."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    images = data["images"]
    outs = [net(from_uint8(images[i : i + batch_size].to(device))) for i in range(0, images.shape[0], batch_size)]
    net.train(was_training)
    logits, id_pred, nu_pred = (t.float().cpu() for t in split_outputs(torch.cat(outs)))
    style, identity = data["style"].cpu(), data["identity"].cpu()

    def r2(pred: Tensor, target: Tensor) -> Tensor:
        return 1.0 - (pred - target).square().mean(0) / target.var(0, unbiased=False).clamp_min(1e-8)

    nu_target = data["nuisance"].cpu()[:, _NUISANCE_INDEX]
    id_r2 = r2(id_pred, identity)
    per_style = {name: (logits.argmax(1)[style == s] == s).float().mean().item() for s, name in enumerate(STYLES)}
    return {
        "n": int(logits.shape[0]),
        "style_accuracy": (logits.argmax(1) == style).float().mean().item(),
        "style_accuracy_per_style": per_style,
        "identity_r2_mean": id_r2.mean().item(),
        "identity_r2_min": id_r2.min().item(),
        "identity_mae": (id_pred - identity).abs().mean().item(),
        "nuisance_r2_mean": r2(nu_pred, nu_target).mean().item(),
        "nuisance_mae": (nu_pred - nu_target).abs().mean().item(),
    }


def trunk_state_dict(net: VGGPretrainNet, dtype: torch.dtype = torch.float16) -> dict[str, Tensor]:
    """The trunk's weights with timm key names ``features.{i}.weight/bias`` and the head's ``head.weight/bias``."""
    assert len(net.norms) == 0, "fold the BatchNorms first"
    state = {f"features.{k}": v.detach() for k, v in net.features.state_dict().items()}
    assert len(state) == 26, f"VGG16 has 13 convolutions, got {len(state) // 2}"
    state |= {f"head.{k}": v.detach() for k, v in net.head.state_dict().items()}
    return {k: v.to("cpu", dtype).contiguous() for k, v in state.items()}


# ----------------------------------------------------------------------------------------------
# Training (shared with hrinv_nb.toy.resnet)


def _lr_at(progress: float, lr: float, warmup: float = 0.05) -> float:
    """Linear warm-up over the first ``warmup`` of training, then cosine decay to 10% of ``lr``."""
    if progress < warmup:
        return lr * max(progress / warmup, 0.01)
    t = min(1.0, (progress - warmup) / (1.0 - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


# fmt: off
def pretrain_multitask(net: nn.Module, train: dict[str, Tensor], *, steps: int, batch_size: int, lr: float,
                       weight_decay: float, seed: int, deadline: float | None = None, progress: bool = True,
                       desc: str = "pretraining") -> dict[str, Any]:
# fmt: on
    """Train ``net`` (images -> :func:`split_outputs` layout) on the pre-rendered ``train`` set, on its device.

    AdamW (no decay on biases and norms), gradient-norm clipping at 5, bfloat16 autocast on CUDA.
    Stops after ``steps`` or once ``perf_counter()`` passes ``deadline``; the learning-rate schedule
    (warm-up, cosine) follows the larger of the step fraction and the time fraction, so a run cut by
    its budget still ends with a decayed rate. Batches: ``torch.Generator().manual_seed(seed + 7)``.
    Returns ``steps_done``, ``train_seconds`` and the running loss parts.
    """
    from tqdm.auto import tqdm

    device = next(net.parameters()).device
    n_train = train["images"].shape[0]
    assert steps >= 1 and batch_size >= 2, (steps, batch_size)
    batch_size = min(batch_size, n_train)
    decay = [p for p in net.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in net.parameters() if p.requires_grad and p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, weight_decay=weight_decay
    )
    generator = torch.Generator().manual_seed(seed + 7)
    perm, cursor = torch.randperm(n_train, generator=generator).to(device), 0
    net.train()
    t1 = time.perf_counter()
    span = None if deadline is None else max(1e-3, deadline - t1)
    running: dict[str, Tensor] = {}
    bar = tqdm(total=steps, desc=desc, disable=not progress, mininterval=5.0)
    step = 0
    while step < steps:
        now = time.perf_counter()
        if deadline is not None and now > deadline and step > 0:
            break
        frac = step / steps if span is None else max(step / steps, (now - t1) / span)
        if cursor + batch_size > n_train:
            perm, cursor = torch.randperm(n_train, generator=generator).to(device), 0
        idx = perm[cursor : cursor + batch_size]
        cursor += batch_size
        for group in opt.param_groups:
            group["lr"] = _lr_at(frac, lr)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = net(from_uint8(train["images"][idx]))
        loss, parts = pretrain_loss(out, train["style"][idx], train["identity"][idx], train["nuisance"][idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decay + no_decay, 5.0)
        opt.step()
        running = {k: 0.9 * running.get(k, v) + 0.1 * v for k, v in parts.items()}
        step += 1
        bar.update(1)
        if step % 100 == 0 or step == 1:  # the only host synchronisations of the loop
            values = {k: v.item() for k, v in running.items()}
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"{desc} diverged at step {step}: {values}")
            bar.set_postfix({k: f"{v:.3f}" for k, v in values.items()}, refresh=False)
    bar.close()
    _sync(device)
    return {
        "steps_done": step,
        "train_seconds": round(time.perf_counter() - t1, 2),
        "final_train_loss_parts": {k: round(v.item(), 4) for k, v in running.items()},
    }


def write_provenance(out_path: Path, provenance: dict[str, Any]) -> None:
    """Write ``provenance`` as ``<out_path>.json`` (atomically), next to the asset."""
    text = json.dumps(provenance, indent=2) + "\n"
    atomic_write(Path(out_path).with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))


def save_safetensors(state: dict[str, Tensor], out_path: Path, metadata: dict[str, str]) -> None:
    """Write ``state`` as safetensors to ``out_path`` atomically."""
    from safetensors.torch import save_file

    atomic_write(out_path, lambda tmp: save_file(state, tmp, metadata=metadata))


# ----------------------------------------------------------------------------------------------
# Style classifier (the pretraining head)


def load_style_head(path: str | os.PathLike | None = None) -> nn.Linear:
    """The pretraining head shipped with the toy VGG16 (``head.weight`` [n_outputs, C], ``head.bias``)."""
    from safetensors import safe_open

    path = load_toy_vgg_path(path)
    with safe_open(str(path), framework="pt") as f:
        if "head.weight" not in set(f.keys()):
            raise ValueError(f"{path}: no 'head.weight'; not a toy VGG16 file with its pretraining head")
        weight, bias = f.get_tensor("head.weight").float(), f.get_tensor("head.bias").float()
    assert weight.ndim == 2 and weight.shape[0] == len(STYLES) + N_IDENTITY + len(NUISANCE_TARGETS), weight.shape
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    return head.eval().requires_grad_(False)


# fmt: off
def style_classifier(device: str | torch.device = "cpu", path: str | os.PathLike | None = None,
                     batch_size: int = 256) -> Callable[[Tensor], Tensor]:
# fmt: on
    """``images [B,3,H,W] in [-1,1], any size -> logits [B, len(STYLES)]`` (float32, CPU, no grad).

    The toy VGG16 (loaded through :func:`hrinv_nb.losses.vgg16_trunk`, as the losses do) and its
    pretraining head; inputs are area-resized to 32x32 (the pretraining size) first. ``STYLES[argmax]``
    is the predicted style.
    """
    from hrinv_nb.losses import area_resize, imagenet_normalise, vgg16_trunk

    path = load_toy_vgg_path(path)
    device = torch.device(device)
    trunk = vgg16_trunk(30, weights=path).to(device)
    head = load_style_head(path).to(device)

    def classify(img: Tensor) -> Tensor:
        assert img.ndim == 4 and img.shape[1] == 3, f"expected images [B,3,H,W], got {tuple(img.shape)}"
        out = []
        with torch.no_grad():
            for i in range(0, img.shape[0], batch_size):
                x = img[i : i + batch_size].to(device, torch.float32)
                if tuple(x.shape[-2:]) != (PRETRAIN_SIZE, PRETRAIN_SIZE):
                    x = area_resize(x, PRETRAIN_SIZE)
                feats = trunk(imagenet_normalise(x)).mean(dim=(2, 3))
                out.append(head(feats)[:, : len(STYLES)].cpu())
        logits = torch.cat(out) if out else torch.zeros(0, len(STYLES))
        assert logits.shape == (img.shape[0], len(STYLES)), tuple(logits.shape)
        return logits

    return classify


# fmt: off
def evaluate_style_classifier(classify: Callable[[Tensor], Tensor], per_style: int = 100, size: int = 128,
                              seed: int = 4321, device: str | torch.device = "cpu") -> dict[str, Any]:
# fmt: on
    """Accuracy of ``classify`` on ``per_style`` fresh renders of each style at ``size``² (seeded)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    identity, nuisance = sample_identity(per_style, generator), sample_nuisance(per_style, generator)
    accuracy = {}
    for s, name in enumerate(STYLES):
        pred = classify(render_on(identity, nuisance, name, (size, size), device)).argmax(1)
        accuracy[name] = (pred == s).float().mean().item()
    return {"size": size, "per_style": per_style, "seed": seed, "accuracy": accuracy, "min": min(accuracy.values())}


# ----------------------------------------------------------------------------------------------
# The toy VGG16


# fmt: off
def pretraining_sets(
    size: int,
    n_train: int,
    n_val: int,
    seed: int,
    device: torch.device,
    work_dir: str | os.PathLike | None,
    deadline: float | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The (cached) training and validation renders every toy pretraining uses (VGG16 and ResNet50).

    Seeds ``seed*1000+1`` (training) and ``+2`` (validation); the training pool stops growing at
    ``deadline`` (a pool cut short is not cached).
    """
    names = (f"vgg_train_s{size}_n{n_train}_seed{seed}", f"vgg_val_s{size}_n{n_val}_seed{seed}")
    val = cached_dataset(
        names[1], lambda: render_factor_dataset(n_val, seed * 1000 + 2, size, device=device), work_dir, n_val, device
    )
    train = cached_dataset(
        names[0],
        lambda: render_factor_dataset(n_train, seed * 1000 + 1, size, device=device, deadline=deadline),
        work_dir,
        n_train,
        device,
    )
    return train, val


def train_toy_vgg(out_path: str | os.PathLike = TOY_VGG_PATH, steps: int = 3000, seed: int = 0, *,
                  batch_size: int = 0, lr: float = 2e-3, weight_decay: float = 1e-4, n_train: int = 0,
                  n_val: int = 1000, check_per_style: int = 100, size: int = PRETRAIN_SIZE,
                  device: str = "cpu", time_budget_s: float | None = None,
                  work_dir: str | os.PathLike | None = WORK_DIR, progress: bool = True) -> dict[str, Any]:
# fmt: on
    """Pretrain the narrow VGG16 trunk on renders at ``size``², save it to ``out_path`` with its JSON provenance.

    ``batch_size`` / ``n_train`` 0: 64 / 12000 on the CPU, 256 / 200000 on CUDA. Renders on ``device``.
    With ``time_budget_s`` the whole call (rendering, training, evaluation, saving) stays near that
    many seconds: the training pool stops growing at 35% of it (a smaller pool; a pool cut short is not
    cached), training at 92%; the asset and provenance (``steps_done``, seconds) are written either way.
    Deterministic from ``seed`` on a given device (data: seeds ``seed*1000+1`` / ``+2``; init: ``seed``;
    batches: ``seed+7``). The training and validation sets are cached in ``work_dir`` (``None``: no
    cache). The BatchNorms are folded and the held-out metrics are measured on the saved float16 file.
    """
    budget = Budget(time_budget_s)
    dev = torch.device(device)
    out_path = Path(out_path)
    batch_size = auto_setting(batch_size, dev, 64, 256)
    n_train = auto_setting(n_train, dev, 12000, 200000)
    assert steps >= 1 and batch_size >= 2 and n_train >= batch_size, (steps, batch_size, n_train)
    train, val = pretraining_sets(size, n_train, n_val, seed, dev, work_dir, budget.deadline(0.35))
    render_seconds = budget.spent()

    net = VGGPretrainNet(seed).to(dev)
    fit = pretrain_multitask(
        net, train, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
        deadline=budget.deadline(0.92), progress=progress, desc="toy VGG16",
    )  # fmt: skip
    net.eval()
    metrics_bn = evaluate_pretraining(net, val)
    probe = from_uint8(val["images"][:64])
    with torch.no_grad():
        before = net(probe)
        net.fold_batchnorm()
        folded = net(probe)
    shipped = trunk_state_dict(net)  # float16: evaluate exactly what is saved
    meta = {"format": "timm vgg16 trunk", "widths": json.dumps(list(net.widths)), "seed": str(seed)}
    save_safetensors(shipped, out_path, meta)
    with torch.no_grad():
        net.features.load_state_dict({k[len("features.") :]: v.float() for k, v in shipped.items() if "features" in k})
        net.head.load_state_dict({k[len("head.") :]: v.float() for k, v in shipped.items() if k.startswith("head.")})
        after = net(probe)
    metrics = evaluate_pretraining(net, val)
    style_check = evaluate_style_classifier(
        style_classifier(dev, out_path), per_style=check_per_style, size=128, device=dev
    )

    provenance: dict[str, Any] = {
        "asset": f"toy VGG16 trunk (timm VGG16 features.0-30, widths {list(net.widths)} per stage, float16) "
        "+ its pretraining head (head.weight/bias)",
        "task": "style classification (4) + regression of all identity factors and "
        f"{list(NUISANCE_TARGETS)} from a {size}x{size} render; head: GAP + linear (shipped as head.*)",
        "seed": seed,
        "steps": steps,
        "steps_done": fit["steps_done"],
        "time_budget_s": time_budget_s,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "batchnorm": "BatchNorm2d after each conv during training, folded into the convs before saving",
        "n_train_requested": n_train,
        "n_train": int(train["images"].shape[0]),
        "n_val": n_val,
        "size": size,
        "device": str(dev),
        "render_seconds": round(render_seconds, 1),
        "train_seconds": fit["train_seconds"],
        "final_train_loss_parts": fit["final_train_loss_parts"],
        "heldout": metrics,
        "heldout_before_folding_fp32": metrics_bn,
        "style_classifier_check": style_check,
        "fold_max_abs_diff": (folded - before).abs().max().item(),
        "fp16_max_abs_diff": (after - folded).abs().max().item(),
        "renderer_fingerprint": renderer_fingerprint(),
        "n_params_trunk": sum(p.numel() for p in net.features.parameters()),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "size_bytes": out_path.stat().st_size,
        "training_seconds": round(budget.spent(), 1),  # all of it: render, train, evaluate, save
    }
    write_provenance(out_path, provenance)
    return provenance


# The training options the command line exposes (flags and types come from train_toy_vgg's defaults).
_CLI_OPTIONS = ("steps", "seed", "batch_size", "lr", "n_train", "n_val", "check_per_style", "device")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI: (re)build the toy VGG16 trunk and write its JSON provenance next to it."""
    return rebuild_main(train_toy_vgg, argv, out_default=TOY_VGG_PATH, options=_CLI_OPTIONS, report="heldout")


if __name__ == "__main__":
    main()
