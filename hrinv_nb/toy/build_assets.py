"""Regenerate the embedded toy world's trained assets in ``data/``, resumably, from seeds.

    python -m hrinv_nb.toy.build_assets                 # every asset that is missing, in order
    python -m hrinv_nb.toy.build_assets --only G_s      # one asset (others: G_t_cartoon, ...)
    python -m hrinv_nb.toy.build_assets --force --only G_t_anime

Work in progress (render caches, resumable training states) lives in ``data/_work/`` (ignored by
git); an interrupted command picks up where it stopped. Each finished asset is written to
``data/<name>.safetensors`` (float16 storage) with a provenance record ``data/<name>.json``:
the command, seed, configuration, training time and file size.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import load_networks, save_networks
from ..inr import attach_inr_head, train_inr_head
from .training import TrainConfig, finetune_copy, train
from .world import TARGET_STYLES, PairedDataset, new_toy_networks, paired_dataset

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"
WORK = DATA / "_work"

SOURCE = dict(name="G_s", style="photo", n_data=8192, data_seed=1, init_seed=0, train_seed=0)
TARGETS = {
    s: dict(name=f"G_t_{s}", style=s, n_data=4096, data_seed=10 + i, train_seed=100 + i)
    for i, s in enumerate(TARGET_STYLES)
}


def _reconstruction_recipe(
    steps: int, batch: int, lr_g: float, seed: int, checkpoint_every: int = 50, **refine: Any
) -> TrainConfig:
    """Reconstruction only (no D): full 64² L1 against the render of z, EMA over 0.5 kimg; ``refine``
    sets the refinement fields (``g_betas``, ``mapping_lr_mult``, ``lr_rampdown``, ``freeze_mapping``)."""
    return TrainConfig(
        steps=steps,
        batch=batch,
        lr_g=lr_g,
        adv_weight=0.0,
        recon_weight=1.0,
        recon_size=64,
        ema_kimg=0.5,
        checkpoint_every=checkpoint_every,
        seed=seed,
        **refine,
    )


def _adversarial_recipe(
    steps: int, lr: float, ema_kimg: float, augment_p: float, seed: int, freeze_mapping: bool = False
) -> TrainConfig:
    """Adversarial training (lazy R1, γ 0.05 every 16 steps) with a 32² reconstruction anchor of weight 10."""
    return TrainConfig(
        steps=steps,
        batch=16,
        lr_g=lr,
        lr_d=lr,
        r1_gamma=0.05,
        r1_interval=16,
        ema_kimg=ema_kimg,
        recon_weight=10.0,
        recon_size=32,
        augment_p=augment_p,
        freeze_mapping=freeze_mapping,
        checkpoint_every=50,
        seed=seed,
    )


def source_pretrain_config(steps: int) -> TrainConfig:
    """Phase A of G_s: reconstruction only (no D), full 64² L1 against the render of z."""
    return _reconstruction_recipe(steps, batch=16, lr_g=0.01, seed=0, checkpoint_every=100)


def source_config(steps: int) -> TrainConfig:
    """Phase B of G_s: adversarial training with a 32² reconstruction anchor (photo renders)."""
    return _adversarial_recipe(steps, lr=0.0025, ema_kimg=2.0, augment_p=0.0, seed=1)


def source_refine_config(steps: int) -> TrainConfig:
    """Phase C1 of G_s: long reconstruction-only refinement, full 64² L1, Adam with momentum.

    The renders' textures (hair strands, pores, background grain) are hashed from seed factors, so
    the L1 optimum is the clean, texture-averaged face (L1 floor about 0.05); the layout needs many
    steps to converge there, which phases A/B were too short for. The mapping trains (10× lr).
    """
    return _reconstruction_recipe(steps, batch=16, lr_g=0.003, seed=2, g_betas=(0.9, 0.99), mapping_lr_mult=10.0)


def source_refine_frozen_config(steps: int) -> TrainConfig:
    """Phase C2 of G_s: as C1 with the mapping frozen (shared with every G_t), batch 8 (more updates per
    image on a busy CPU) and a cosine lr ramp-down over the last 30%: the G_t recipe with seed 3."""
    return target_refine_config(steps, seed=3)


def target_refine_config(steps: int, seed: int) -> TrainConfig:
    """Fine-tuning of a toy G_t: reconstruction only (64² L1), mapping frozen, batch 8, cosine ramp-down."""
    return _reconstruction_recipe(
        steps, batch=8, lr_g=0.003, seed=seed, g_betas=(0.9, 0.99), lr_rampdown=0.3, freeze_mapping=True
    )


def target_config(steps: int, seed: int) -> TrainConfig:
    """Fine-tuning configuration of a toy target generator G_t (mapping frozen, as in the paper)."""
    return _adversarial_recipe(steps, lr=0.002, ema_kimg=1.0, augment_p=0.2, seed=seed, freeze_mapping=True)


def _record(name: str, seconds: float, cfg: TrainConfig, extra: dict) -> None:
    path = DATA / f"{name}.safetensors"
    record = {
        "asset": name,
        "command": "python -m hrinv_nb.toy.build_assets " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "training_seconds": round(seconds, 1),
        "size_bytes": path.stat().st_size,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "train_config": asdict(cfg),
        **extra,
    }
    (DATA / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")


# Keys that _record writes afresh for every asset; a rebuild carries the others over from an earlier record.
RECORD_KEYS = ("asset", "command", "training_seconds", "size_bytes", "torch", "threads", "train_config")


def _carried_over(record: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The entries of an earlier record that are not :data:`RECORD_KEYS` (nor ``drop``)."""
    return {k: v for k, v in record.items() if k not in RECORD_KEYS + drop}


def _final_l1(history: list[dict[str, float]], last: int = 50) -> float:
    """Mean reconstruction L1 of G over the ``last`` steps of a training history."""
    return sum(h["g_recon"] for h in history[-last:]) / len(history[-last:])


def _source_data(progress: bool) -> PairedDataset:
    """The photo renders G_s trains on (cached in ``data/_work/data_photo.pt``)."""
    return paired_dataset(
        SOURCE["n_data"], SOURCE["style"], SOURCE["data_seed"], cache=WORK / "data_photo.pt", progress=progress
    )


PHASE_B = WORK / "G_s_phaseB.safetensors"  # G_s after phases A+B (the first-pass asset), with its record
PHASE_C1 = WORK / "G_s_phaseC1.safetensors"  # G_s after phase C1: its mapping is final, every G_t starts here


def build_source(
    pretrain_steps: int, steps: int, refine_steps: int = 0, frozen_steps: int = 0, progress: bool = True
) -> Path:
    """Train G_s/D_s on photo renders: reconstruction pre-training (A), adversarial + anchor (B), then
    ``refine_steps`` of long 64² reconstruction refinement (C1) and ``frozen_steps`` more with the mapping
    frozen (C2; the G_t fork from the C1 weights, so all share one mapping). Each phase resumes; A+B are skipped when
    ``data/_work/G_s_phaseB.safetensors`` (+ ``.json``) already holds their result."""
    spec = SOURCE
    data = _source_data(progress)
    if not PHASE_B.exists():
        G, D = new_toy_networks(spec["init_seed"])
        pre_cfg = source_pretrain_config(pretrain_steps)
        pre = train(G, D, data.sample, pre_cfg, out_dir=WORK / "G_s_pretrain", progress=progress)
        G = pre.G_ema.train().requires_grad_(True)
        cfg = source_config(steps)
        res = train(G, D, data.sample, cfg, out_dir=WORK / spec["name"], progress=progress)
        save_networks(PHASE_B, G=res.G_ema, D=res.D, half=True, meta={"asset": "G_s", "style": "photo"})
        PHASE_B.with_suffix(".json").write_text(
            json.dumps(
                {
                    **{k: v for k, v in spec.items() if k != "name"},
                    "training_seconds": round(pre.seconds + res.seconds, 1),
                    "pretrain_config": asdict(pre_cfg),
                    "pretrain_seconds": round(pre.seconds, 1),
                    "train_config": asdict(cfg),
                },
                indent=2,
            )
            + "\n"
        )
    phase_b = json.loads(PHASE_B.with_suffix(".json").read_text())
    ab = _carried_over(phase_b)
    ab["adversarial_config"], ab["adversarial_plus_pretrain_seconds"] = (
        phase_b["train_config"],
        phase_b["training_seconds"],
    )
    src = load_networks(PHASE_B)
    G, D, seconds, cfg = src.G, src.D, phase_b["training_seconds"], TrainConfig(**phase_b["train_config"])
    if refine_steps > 0:
        cfg = source_refine_config(refine_steps)
        res = train(G.train().requires_grad_(True), D, data.sample, cfg, out_dir=WORK / "G_s_refine", progress=progress)
        seconds += res.seconds
        ab["refine_config"], ab["refine_seconds"] = asdict(cfg), round(res.seconds, 1)
        ab["refine_final_l1"] = _final_l1(res.history)
        save_networks(PHASE_C1, G=res.G_ema, D=D, half=True, meta={"asset": "G_s", "style": "photo", "phase": "C1"})
        G = load_networks(PHASE_C1).G  # from the fp16 file, so the mapping is bit-identical to the G_t's
    if refine_steps > 0 and frozen_steps > 0:
        cfg = source_refine_frozen_config(frozen_steps)
        res = train(
            G.train().requires_grad_(True), D, data.sample, cfg, out_dir=WORK / "G_s_refine_frozen", progress=progress
        )
        G, seconds = res.G_ema, seconds + res.seconds
        ab["refine_frozen_seconds"] = round(res.seconds, 1)
        ab["refine_frozen_final_l1"] = _final_l1(res.history)
    out = save_networks(DATA / "G_s.safetensors", G=G, D=D, half=True, meta={"asset": "G_s", "style": "photo"})
    _record("G_s", seconds, cfg, ab)
    return out


def continue_source(steps: int, progress: bool = True) -> Path:
    """More phase-B training of the shipped G_s/D_s (e.g. to improve a first-pass asset), then save."""
    data = _source_data(progress)
    src = load_networks(DATA / "G_s.safetensors")
    previous = json.loads((DATA / "G_s.json").read_text())
    G, D = src.G.train().requires_grad_(True), src.D
    cfg = source_config(steps)
    res = train(G, D, data.sample, cfg, out_dir=WORK / "G_s_continued", progress=progress)
    out = save_networks(
        DATA / "G_s.safetensors", G=res.G_ema, D=res.D, half=True, meta={"asset": "G_s", "style": "photo"}
    )
    history = previous.get("continued", []) + [{"steps": steps, "seconds": round(res.seconds, 1)}]
    _record(
        "G_s",
        previous["training_seconds"] + res.seconds,
        cfg,
        _carried_over(previous, drop=("continued",)) | {"continued": history},
    )
    return out


def build_target(style: str, steps: int, progress: bool = True) -> Path:
    """Fine-tune G_t/D_t from G_s/D_s on renders of the same factors in ``style``, mapping frozen.

    The start is G_s after its phase C1 (``data/_work/G_s_phaseC1.safetensors``), whose mapping the
    shipped G_s keeps bit for bit; without that file (e.g. a fresh checkout), the shipped G_s.
    Reconstruction-dominant: full 64² L1 to the target-style render of the same z (no adversarial term).
    """
    spec = TARGETS[style]
    base = PHASE_C1 if PHASE_C1.exists() else DATA / "G_s.safetensors"
    src = load_networks(base)
    data = paired_dataset(spec["n_data"], style, spec["data_seed"], cache=WORK / f"data_{style}.pt", progress=progress)
    G, D = finetune_copy(src.G, src.D)
    cfg = target_refine_config(steps, spec["train_seed"])
    res = train(G, D, data.sample, cfg, out_dir=WORK / spec["name"], progress=progress)
    name = spec["name"]
    out = save_networks(
        DATA / f"{name}.safetensors",
        G=res.G_ema,
        D=res.D,
        half=True,
        meta={"asset": name, "style": style, "finetuned_from": "G_s"},
    )
    _record(
        name,
        res.seconds,
        cfg,
        {
            **{k: v for k, v in spec.items() if k != "name"},
            "finetuned_from": str(base.relative_to(REPO)),
            "final_l1": _final_l1(res.history),
        },
    )
    return out


def build_inr(steps: int, progress: bool = True) -> Path:
    """Attach a Style-INR head to the frozen G_s and fit it at several output shapes (the toy Style-INR-GAN:
    the same w renders at any resolution and aspect ratio)."""
    src = load_networks(DATA / "G_s.safetensors")
    G = attach_inr_head(src.G, seed=7)
    t0 = time.perf_counter()
    losses = train_inr_head(G, steps=steps, batch=8, seed=7, progress=progress)
    seconds = time.perf_counter() - t0
    out = save_networks(DATA / "G_s_inr.safetensors", G=G, half=True, meta={"asset": "G_s_inr", "inr_head_of": "G_s"})
    record = {
        "asset": "G_s_inr",
        "command": "python -m hrinv_nb.toy.build_assets --only G_s_inr",
        "training_seconds": round(seconds, 1),
        "size_bytes": out.stat().st_size,
        "steps": steps,
        "seed": 7,
        "final_l1": sum(losses[-20:]) / min(20, len(losses)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (DATA / "G_s_inr.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    names = ["G_s"] + [TARGETS[s]["name"] for s in TARGET_STYLES] + ["G_s_inr"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=names, default=None)
    parser.add_argument("--force", action="store_true", help="rebuild assets that already exist")
    parser.add_argument("--source-pretrain-steps", type=int, default=1800)
    parser.add_argument("--source-steps", type=int, default=500)
    parser.add_argument("--source-refine-steps", type=int, default=800)
    parser.add_argument("--source-frozen-steps", type=int, default=1800)
    parser.add_argument("--target-steps", type=int, default=1000)
    parser.add_argument("--inr-steps", type=int, default=300)
    parser.add_argument(
        "--continue-source",
        type=int,
        default=0,
        metavar="STEPS",
        help="train the shipped G_s for STEPS more adversarial steps (then rebuild the G_t with --force)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.continue_source:
        print(f"G_s: continuing for {args.continue_source} steps ...", flush=True)
        print(f"G_s: wrote {continue_source(args.continue_source, progress=not args.quiet).relative_to(REPO)}")
        return 0
    for name in args.only or names:
        if (DATA / f"{name}.safetensors").exists() and not args.force:
            print(f"{name}: exists, skipped (use --force to rebuild)")
            continue
        if args.force:
            shutil.rmtree(WORK / name, ignore_errors=True)
            if name == "G_s":
                shutil.rmtree(WORK / "G_s_pretrain", ignore_errors=True)
                for sub in ("G_s_refine", "G_s_refine_frozen"):
                    shutil.rmtree(WORK / sub, ignore_errors=True)
                for f in (PHASE_B, PHASE_B.with_suffix(".json"), PHASE_C1):
                    f.unlink(missing_ok=True)
        print(f"{name}: building ...", flush=True)
        if name == "G_s":
            out = build_source(
                args.source_pretrain_steps,
                args.source_steps,
                args.source_refine_steps,
                args.source_frozen_steps,
                progress=not args.quiet,
            )
        elif name == "G_s_inr":
            out = build_inr(args.inr_steps, progress=not args.quiet)
        else:
            out = build_target(name.removeprefix("G_t_"), args.target_steps, progress=not args.quiet)
        print(f"{name}: wrote {out.relative_to(REPO)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
