"""A toy "ImageNet-pretrained" ResNet50: a narrow timm ``resnet50`` trained on 32x32 toy renders.

The ResNet50 rows of the paper's Table II (and Fig. 6) use an ImageNet ResNet50; the toy world's
stand-in is timm's ``resnet50`` topology itself (``ResNet`` with ``Bottleneck`` blocks, layers
3-4-6-3, the same module names, so the loss taps ``conv1``, ``layer1.2.conv1`` ... work unchanged)
at 5/16 of the width (timm's ``channels=(20, 40, 80, 160)``: 640 output features instead of 2048;
timm's plain 7x7 stem stays 64 wide, as in ``resnet50``; a quarter, 16 planes, would make the first
block's output as wide as the stem, and timm would drop its projection shortcut), pretrained like the toy VGG16
(:mod:`hrinv_nb.toy.vgg`): at **32x32** on renders of every style, to classify the style and
regress the identity factors and the nuisance targets. BatchNorm is part of ResNet50, so it
stays (with its running statistics).

The file holds timm's key names (float16 safetensors), with the pretraining head as timm's
classifier ``fc.weight`` / ``fc.bias`` (skipped by the loss loader, as timm's own ``fc.*`` is), so
``perceptual_loss('resnet50', weights=TOY_RESNET_PATH)`` loads it with the code used for real
weights (the widths are read from the weight shapes). Rebuild it with ``python -m hrinv_nb.toy.resnet``
or call :func:`train_toy_resnet` with ``device='cuda', time_budget_s=...``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hrinv_nb.toy.rebuild import rebuild_main
from hrinv_nb.toy.render import N_IDENTITY, STYLES
from hrinv_nb.toy.vgg import (
    DATA_DIR,
    NUISANCE_TARGETS,
    PRETRAIN_SIZE,
    REPO_ROOT,
    WORK_DIR,
    Budget,
    auto_setting,
    evaluate_pretraining,
    from_uint8,
    pretrain_multitask,
    pretraining_sets,
    renderer_fingerprint,
    save_safetensors,
    write_provenance,
)

__all__ = [
    "TOY_RESNET_PATH",
    "TOY_RESNET_JSON",
    "TOY_RESNET_CHANNELS",
    "REBUILD_COMMAND",
    "load_toy_resnet_path",
    "ResNetPretrainNet",
    "resnet_state_dict",
    "train_toy_resnet",
    "main",
]

TOY_RESNET_PATH = DATA_DIR / "resnet50_toy.safetensors"
TOY_RESNET_JSON = TOY_RESNET_PATH.with_suffix(".json")
TOY_RESNET_CHANNELS = (20, 40, 80, 160)  # timm ResNet ``channels``; resnet50: 64, 128, 256, 512
REBUILD_COMMAND = "PYTHONPATH=. python -m hrinv_nb.toy.resnet"


def load_toy_resnet_path(path: str | os.PathLike | None = None) -> Path:
    """The toy ResNet50 file (default :data:`TOY_RESNET_PATH`); a clear error if it is missing."""
    path = Path(path) if path is not None else TOY_RESNET_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"toy ResNet50 weights not found: {path}. Regenerate them with: "
            f"cd {REPO_ROOT} && {REBUILD_COMMAND}" + (f" --out {path}" if path != TOY_RESNET_PATH else "")
        )
    return path


class ResNetPretrainNet(nn.Module):
    """timm ``resnet50`` (narrowed by ``channels``) whose classifier ``fc`` is the multi-task head.

    Initialised by timm under ``torch.manual_seed(seed)`` (in a forked RNG state, the global one is
    untouched); ``fc`` is redrawn from ``torch.Generator().manual_seed(seed + 1)``. Outputs follow
    :func:`hrinv_nb.toy.vgg.split_outputs` (style logits, identity factors, nuisance targets).
    """

    def __init__(self, seed: int, channels: Sequence[int] = TOY_RESNET_CHANNELS) -> None:
        super().__init__()
        import timm

        self.channels = tuple(int(c) for c in channels)
        assert len(self.channels) == 4 and 4 * self.channels[0] != 64, f"resnet50's layer1.0 projection: {channels}"
        self.n_outputs = len(STYLES) + N_IDENTITY + len(NUISANCE_TARGETS)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = timm.create_model(
                "resnet50",
                pretrained=False,
                num_classes=self.n_outputs,
                channels=self.channels,
            )
        fc = self.model.get_classifier()
        assert isinstance(fc, nn.Linear) and fc.in_features == 4 * self.channels[-1], fc
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            fc.weight.normal_(0.0, fc.in_features**-0.5, generator=generator)
            fc.bias.zero_()

    def forward(self, img: Tensor) -> Tensor:
        """Images [B,3,H,W] in [-1,1] -> raw outputs [B, n_outputs] (ImageNet-normalised input, as the losses)."""
        from hrinv_nb.losses import imagenet_normalise

        assert img.ndim == 4 and img.shape[1] == 3, tuple(img.shape)
        out = self.model(imagenet_normalise(img))
        assert out.shape == (img.shape[0], self.n_outputs), tuple(out.shape)
        return out


def resnet_state_dict(net: ResNetPretrainNet, dtype: torch.dtype = torch.float16) -> dict[str, Tensor]:
    """timm key names (``conv1.weight``, ``layer1.0.bn1.running_mean``, ..., ``fc.*``): floats in ``dtype``."""
    return {
        k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
        for k, v in net.model.state_dict().items()
    }


# fmt: off
def train_toy_resnet(out_path: str | os.PathLike = TOY_RESNET_PATH, steps: int = 3000, seed: int = 0, *,
                     batch_size: int = 0, lr: float = 2e-3, weight_decay: float = 1e-4, n_train: int = 0,
                     n_val: int = 1000, size: int = PRETRAIN_SIZE, device: str = "cpu",
                     time_budget_s: float | None = None, work_dir: str | os.PathLike | None = WORK_DIR,
                     progress: bool = True) -> dict[str, Any]:
# fmt: on
    """Pretrain the narrow ResNet50 on renders at ``size``², save it to ``out_path`` with its JSON provenance.

    Same data (the toy VGG16's cached sets, seeds ``seed*1000+1`` / ``+2``), task, loop and budget
    rules as :func:`hrinv_nb.toy.vgg.train_toy_vgg`: ``batch_size`` / ``n_train`` 0 mean 64 / 12000 on
    the CPU, 256 / 200000 on CUDA; with ``time_budget_s`` the pool stops growing at 35% of it and
    training at 92%. Held-out metrics are measured on the saved float16 weights.
    """
    budget = Budget(time_budget_s)
    dev = torch.device(device)
    out_path = Path(out_path)
    batch_size = auto_setting(batch_size, dev, 64, 256)
    n_train = auto_setting(n_train, dev, 12000, 200000)
    assert steps >= 1 and batch_size >= 2 and n_train >= batch_size, (steps, batch_size, n_train)
    train, val = pretraining_sets(size, n_train, n_val, seed, dev, work_dir, budget.deadline(0.35))
    render_seconds = budget.spent()

    net = ResNetPretrainNet(seed).to(dev)
    fit = pretrain_multitask(
        net, train, steps=steps, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
        deadline=budget.deadline(0.92), progress=progress, desc="toy ResNet50",
    )  # fmt: skip
    net.eval()
    metrics_fp32 = evaluate_pretraining(net, val)
    probe = from_uint8(val["images"][:64])
    with torch.no_grad():
        before = net(probe)
    shipped = resnet_state_dict(net)
    meta = {
        "format": "timm resnet50",
        "channels": json.dumps(list(net.channels)),
        "seed": str(seed),
    }
    save_safetensors(shipped, out_path, meta)
    with torch.no_grad():
        net.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in shipped.items()})
        after = net(probe)
    metrics = evaluate_pretraining(net, val)

    provenance: dict[str, Any] = {
        "asset": f"toy ResNet50 (timm resnet50, channels {list(net.channels)}, "
        "float16) + its pretraining head as fc.weight/bias",
        "task": "style classification (4) + regression of all identity factors and "
        f"{list(NUISANCE_TARGETS)} from a {size}x{size} render; head: timm's global pool + fc",
        "seed": seed,
        "steps": steps,
        "steps_done": fit["steps_done"],
        "time_budget_s": time_budget_s,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "n_train_requested": n_train,
        "n_train": int(train["images"].shape[0]),
        "n_val": n_val,
        "size": size,
        "device": str(dev),
        "render_seconds": round(render_seconds, 1),
        "train_seconds": fit["train_seconds"],
        "final_train_loss_parts": fit["final_train_loss_parts"],
        "heldout": metrics,
        "heldout_fp32": metrics_fp32,
        "fp16_max_abs_diff": (after - before).abs().max().item(),
        "renderer_fingerprint": renderer_fingerprint(),
        "n_params": sum(p.numel() for p in net.model.parameters()),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "size_bytes": out_path.stat().st_size,
        "training_seconds": round(budget.spent(), 1),  # all of it: render, train, evaluate, save
    }
    write_provenance(out_path, provenance)
    return provenance


# The training options the command line exposes (flags and types come from train_toy_resnet's defaults).
_CLI_OPTIONS = ("steps", "seed", "batch_size", "lr", "n_train", "n_val", "device")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI: (re)build the toy ResNet50 and write its JSON provenance next to it."""
    return rebuild_main(train_toy_resnet, argv, out_default=TOY_RESNET_PATH, options=_CLI_OPTIONS, report="heldout")


if __name__ == "__main__":
    main()
