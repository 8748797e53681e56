"""Rebuild the embedded toy world's trained assets in ``data/``, resumably, from seeds.

    python -m hrinv_nb.toy.build_assets                       # every missing asset, in order, on the CPU
    python -m hrinv_nb.toy.build_assets --only G_s --force    # one asset again (others: G_t_cartoon, ...)
    python -m hrinv_nb.toy.build_assets --device cuda --preset gpu --out-dir /tmp/world   # a lent GPU

Assets, in build order: the perceptual and identity networks (``vgg16_toy``, ``resnet50_toy``,
``id_embedder_toy``: they do not depend on the generators), ``G_s``, then every ``G_t_<style>``
(fine-tuned from G_s with the mapping frozen) and ``G_s_inr`` (the Style-INR model, from G_s).
Work in progress (resumable training states) lives in ``<out-dir>/_work/``, which git ignores for
``data/``: an interrupted command picks up where it stopped. Each finished asset is written as
``<name>.safetensors`` (float16 storage) with a provenance record ``<name>.json``: the command,
seeds, configuration, device, steps done, training seconds and file size.

Each training stops after its step count or its wall-clock budget (``--preset gpu`` sets budgets
that fit one short call on a lent GPU, and step counts it will not reach), whichever comes first.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ..checkpoints import load_networks, save_networks
from ..files import atomic_write
from ..networks import Generator
from .training import DataFn, TrainConfig, finetune_copy, train
from .world import TARGET_STYLES, new_toy_networks, paired_data_fn, pooled_data_fn

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"

NETWORK_ASSETS = ("vgg16_toy", "resnet50_toy", "id_embedder_toy")
GENERATOR_ASSETS = ("G_s", *(f"G_t_{s}" for s in TARGET_STYLES), "G_s_inr")
ASSETS = NETWORK_ASSETS + GENERATOR_ASSETS
SEEDS: dict[str, int] = {"G_s": 0, "G_t_cartoon": 100, "G_t_caricature": 101, "G_t_anime": 102, "G_s_inr": 7}
SEEDS |= {"vgg16_toy": 0, "resnet50_toy": 0, "id_embedder_toy": 0}


@dataclass(frozen=True)
class Plan:
    """Steps and wall-clock budget (seconds, None: unlimited) of one asset's training."""

    steps: int
    budget_s: float | None = None


# CPU (2 cores): wall-clock budgets that add up to about 6.3 h (with G_s's critic and adversarial phases) (measured step rates in data/README.md); the
# perceptual and identity networks stop at their step counts (minutes each).
CPU_PLAN: dict[str, Plan] = {
    "vgg16_toy": Plan(3000),
    "resnet50_toy": Plan(3000),
    "id_embedder_toy": Plan(2000),
    "G_s": Plan(1_000_000, 3 * 3600.0),
    "G_t_cartoon": Plan(1_000_000, 2700.0),
    "G_t_caricature": Plan(1_000_000, 2700.0),
    "G_t_anime": Plan(1_000_000, 2700.0),
    "G_s_inr": Plan(1_000_000, 2400.0),
}
# One lent GPU (an H100/H200), about 6 minutes of training in all: budgets bind, steps are caps.
GPU_PLAN: dict[str, Plan] = {
    "vgg16_toy": Plan(100_000, 22.0),
    "resnet50_toy": Plan(100_000, 22.0),
    "id_embedder_toy": Plan(100_000, 28.0),
    "G_s": Plan(100_000, 125.0),
    "G_t_cartoon": Plan(100_000, 38.0),
    "G_t_caricature": Plan(100_000, 38.0),
    "G_t_anime": Plan(100_000, 38.0),
    "G_s_inr": Plan(100_000, 45.0),
}
PRESETS = {"cpu": CPU_PLAN, "gpu": GPU_PLAN}


# Weight of the non-saturating adversarial G loss beside the paired L1 (weight 1) in every G_t. A paired L1
# alone averages away whatever detail G cannot place to the pixel (outlines, strands, grain): at 1,500 steps
# of L1-only fine-tuning a G_t's high band stayed at 0.07 of its renders'. Real cross-domain G_t are
# adversarially fine-tuned, and so are ours. The weight is the largest that keeps identity (the pairing):
# measured from the same G_s (high-band ratio / classified as the style / identity top-1 of 100):
#   cartoon, CPU, 20 min, batch 8: 0.2 -> 0.62 / 100 % / 0.24; 0.02 -> 0.68 / 100 % / 0.83;
#   caricature, CPU, 42 min: 0.02 -> 0.90 / 100 % / 0.28 (a partial mode collapse: the same eyes for all);
#   H200, 228 s, batch 8 (about 1,500 steps): 0.005 -> cartoon 0.88 / 100 % / 0.97,
#   caricature 0.82 / 100 % / 0.77, anime 0.78 / 100 % / 0.77.
# G_s's own adversarial phase (photo style, where L1 pins identity) keeps 0.02 (ADV_WEIGHT_G_S).
ADV_WEIGHT = 0.005
ADV_WEIGHT_G_S = 0.02

# Weight of a Laplacian-pyramid L1 (a paired structure term: each band of the difference to the paired render
# weighs as a mean) beside the pixel L1, per G_t. Only caricature has one: under the common recipe it alone
# missed the identity pairing (top-1 of 100 against G_s: 0.79, with its eyes drawn much alike across
# identities), while its renders keep identity (the toy embedder retrieves the photo render from the
# caricature render at 1.00). Chosen on identity seeds that quality.json never uses (2101-2103, 3 x 100),
# each run 45 min on one CPU thread from the same G_s (held-out identity / high-band ratio / classified):
#   no term, GAN 0.005 (the common recipe):      0.80 0.74 0.85 / 0.80 / 100 %
#   no term, GAN 0.0025:                          0.69 0.66 0.81 / 0.39 / 100 %
#   Laplacian 1.0, GAN 0.005:                     0.80 0.80 0.85 / 0.34 / 100 %  (regresses the high band away)
#   Laplacian 1.0, GAN 0.01:                      0.76 0.78 0.84 / 0.78 / 100 %
#   Laplacian 0.3, GAN 0.005 (shipped):           0.84 0.79 0.82 / 0.75 / 100 %
# The gains are within the sampling error (about 0.023 on 300 identities); cartoon (0.97) and anime (0.84)
# were left on the common recipe, not retrained.
LAP_WEIGHTS: dict[str, float] = {"G_t_caricature": 0.3}


def generator_config(
    name: str, plan: Plan, batch: int, train_d: bool, adv_weight: float = ADV_WEIGHT, lap_weight: float | None = None
) -> TrainConfig:
    """The training configuration of G_s (from scratch, L1 only) or of a G_t (fine-tuned, mapping frozen,
    L1 + ``lap_weight`` × Laplacian-pyramid L1, default per style from ``LAP_WEIGHTS``, + adversarial with
    its D learning the style's renders)."""
    source = name == "G_s"
    if lap_weight is None:
        lap_weight = LAP_WEIGHTS.get(name, 0.0)
    return TrainConfig(
        steps=plan.steps,
        batch=batch,
        lr_g=0.003 if source else 0.002,
        lr_d=0.002,
        recon_weight=1.0,
        adv_weight=0.0 if source else adv_weight,
        lap_weight=0.0 if source else lap_weight,
        train_d=train_d or not source,
        r1_gamma=0.0002 * 128**2 / batch,  # NVIDIA's heuristic for the resolution and batch
        ema_kimg=0.5 if source else 0.25,
        freeze_mapping=not source,
        lr_rampdown=0.3,
        time_budget_s=plan.budget_s,
        checkpoint_every=200 if batch >= 32 else 50,
        seed=SEEDS[name],
    )


def critic_config(plan: Plan, batch: int, share: float = 0.15) -> TrainConfig:
    """A D-only phase (G frozen): D learns to tell renders from G_s's samples, for ``share`` of G_s's budget."""
    budget = None if plan.budget_s is None else share * plan.budget_s
    steps = max(1, plan.steps // 6)
    return TrainConfig(
        steps=steps,
        batch=batch,
        recon_weight=0.0,
        adv_weight=0.0,
        train_d=True,
        lr_d=0.002,
        r1_gamma=0.0002 * 128**2 / batch,
        lr_rampdown=0.0,
        time_budget_s=budget,
        checkpoint_every=50,
        seed=SEEDS["G_s"] + 1,
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def _write_record(out_dir: Path, name: str, record: dict[str, Any], argv: list[str] | None = None) -> None:
    path = out_dir / f"{name}.safetensors"
    record = {
        "asset": name,
        "command": "python -m hrinv_nb.toy.build_assets "
        + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)),
        **record,
        "size_bytes": path.stat().st_size if path.exists() else None,
        "torch": torch.__version__,
    }
    text = json.dumps(record, indent=2) + "\n"
    atomic_write(out_dir / f"{name}.json", lambda tmp: Path(tmp).write_text(text))


def adversarial_config(plan: Plan, batch: int, share: float = 0.2) -> TrainConfig:
    """G_s's last phase: L1 + adversarial fine-tuning with D (from the critic phase), mapping frozen, for
    ``share`` of G_s's budget; it sharpens what the paired L1 leaves blurred."""
    budget = None if plan.budget_s is None else share * plan.budget_s
    return TrainConfig(
        steps=max(1, plan.steps // 6),
        batch=batch,
        lr_g=0.002,
        lr_d=0.002,
        recon_weight=1.0,
        adv_weight=ADV_WEIGHT_G_S,
        train_d=True,
        r1_gamma=0.0002 * 128**2 / batch,
        ema_kimg=0.25,
        freeze_mapping=True,
        lr_rampdown=0.3,
        time_budget_s=budget,
        checkpoint_every=50,
        seed=SEEDS["G_s"] + 2,
    )


def _final(history: list[dict[str, float]], key: str = "g_recon", last: int = 4) -> float | None:
    values = [h[key] for h in history[-last:] if key in h]
    return round(sum(values) / len(values), 5) if values else None


def data_for(G: Generator, style: str, batch: int, pool: int) -> DataFn:
    """Paired data for G in ``style``: rendered every batch (``pool`` 0), or from a pool of ``pool`` renders
    of which a quarter batch is re-rendered per step (see :func:`hrinv_nb.toy.world.pooled_data_fn`)."""
    if pool <= 0:
        return paired_data_fn(G, style)
    return pooled_data_fn(G, style, pool_size=pool, fresh_per_call=max(1, batch // 4))


def build_generator(
    name: str,
    plan: Plan,
    out_dir: Path,
    device: torch.device,
    batch: int,
    progress: bool,
    critic_share: float = 0.15,
    pool: int = 0,
    adv_share: float = 0.2,
    adv_weight: float = ADV_WEIGHT,
    lap_weight: float | None = None,
) -> dict:
    """Train G_s from scratch, or a G_t from ``<out_dir>/G_s.safetensors``; write the asset; return its record.

    G_s: a paired-L1 phase (on a CPU without D), a D-only critic phase (CPU), then an adversarial phase
    (``adv_share`` of its budget; 0 skips it). A G_t: L1 + adversarial from G_s, D learning the style."""
    style = "photo" if name == "G_s" else name.removeprefix("G_t_")
    if name == "G_s":
        G, D = new_toy_networks(SEEDS[name])
        start = "random initialisation (seed 0)"
    else:
        src = load_networks(out_dir / "G_s.safetensors")  # fp16 file: every G_t shares its mapping bit for bit
        G, D = finetune_copy(src.G, src.D)
        start = "G_s.safetensors"
    G, D = G.to(device), D.to(device)
    # On a GPU, D learns alongside G; on a CPU (where a D step costs more than a G step) G_s's D is
    # trained afterwards in a D-only phase, and each G_t keeps G_s's D.
    concurrent_d = device.type == "cuda"
    cfg = generator_config(name, plan, batch, train_d=concurrent_d, adv_weight=adv_weight, lap_weight=lap_weight)
    res = train(G, D, data_for(G, style, batch, pool), cfg, out_dir=out_dir / "_work" / name, progress=progress)
    G_final, D_final, extra = res.G_ema, res.D, {}
    if name == "G_s" and not concurrent_d:
        ccfg = critic_config(plan, batch, critic_share)
        G_frozen = copy.deepcopy(G_final)
        crit = train(
            G_frozen,
            D_final,
            data_for(G_frozen, style, batch, pool),
            ccfg,
            # one critic state per G_s (by its step count): a longer G_s must not resume the critic of
            # an earlier one, whose state would also restore that earlier G.
            out_dir=out_dir / "_work" / f"G_s_critic_{res.steps}",
            progress=progress,
        )
        D_final = crit.D
        extra = {
            "critic_config": asdict(ccfg),
            "critic_steps": crit.steps,
            "critic_seconds": round(crit.seconds, 1),
            "critic_final_d": _final(crit.history, "d"),
        }
    if name == "G_s" and adv_share > 0:
        acfg = adversarial_config(plan, batch, adv_share)
        G_adv, D_adv = finetune_copy(G_final, D_final)
        adv = train(
            G_adv,
            D_adv,
            data_for(G_adv, style, batch, pool),
            acfg,
            out_dir=out_dir / "_work" / f"G_s_adv_{res.steps}",  # one adversarial state per G_s, as above
            progress=progress,
        )
        G_final, D_final = adv.G_ema, adv.D
        extra |= {
            "adversarial_config": asdict(acfg),
            "adversarial_steps": adv.steps,
            "adversarial_seconds": round(adv.seconds, 1),
            "adversarial_final_l1": _final(adv.history),
            "adversarial_final_d": _final(adv.history, "d"),
        }
    meta = {"asset": name, "style": style, **({} if name == "G_s" else {"finetuned_from": "G_s"})}
    save_networks(out_dir / f"{name}.safetensors", G=G_final.cpu(), D=D_final.cpu(), half=True, meta=meta)
    return {
        **extra,
        "style": style,
        "resolution": G_final.img_resolution,
        "start": start,
        "steps_done": res.steps,
        "training_seconds": round(res.seconds, 1),
        "images_seen": res.steps * cfg.batch,
        "final_l1": _final(res.history),
        "train_config": asdict(cfg),
        "data": {"pool": pool, "fresh_per_step": max(1, batch // 4) if pool > 0 else batch},
        "history": res.history[:: max(1, len(res.history) // 40)],
    }


def build_inr(plan: Plan, out_dir: Path, device: torch.device, batch: int, progress: bool) -> dict:
    """The toy Style-INR model from ``<out_dir>/G_s.safetensors`` (see :mod:`hrinv_nb.toy.inr_training`)."""
    from .inr_training import train_toy_inr

    src = load_networks(out_dir / "G_s.safetensors")
    G_inr, record = train_toy_inr(
        src.G.to(device),
        device=device,
        steps=plan.steps,
        time_budget_s=plan.budget_s,
        seed=SEEDS["G_s_inr"],
        batch=batch,
        progress=progress,
        work_dir=out_dir / "_work" / "G_s_inr",  # resumable: a stopped build continues from its state
    )
    meta = {"asset": "G_s_inr", "inr_head_of": "G_s"}
    save_networks(out_dir / "G_s_inr.safetensors", G=G_inr.cpu(), half=True, meta=meta)
    return record


def build_network(name: str, plan: Plan, out_dir: Path, device: torch.device, progress: bool) -> dict:
    """The toy VGG16, ResNet50 or identity embedder (each trainer writes its own asset)."""
    trainer: Callable[..., dict[str, Any]]
    if name == "vgg16_toy":
        from .vgg import train_toy_vgg as trainer
    elif name == "resnet50_toy":
        from .resnet import train_toy_resnet as trainer
    else:
        from .identity import train_id_embedder as trainer
    return trainer(
        out_dir / f"{name}.safetensors",
        steps=plan.steps,
        seed=SEEDS[name],
        device=str(device),
        time_budget_s=plan.budget_s,
        work_dir=out_dir / "_work",
    )


def build(
    names: tuple[str, ...],
    out_dir: Path,
    device: torch.device,
    plan: dict[str, Plan],
    batch: int,
    progress: bool,
    critic_share: float = 0.15,
    pool: int = 0,
    adv_share: float = 0.2,
    adv_weight: float = ADV_WEIGHT,
    lap_weight: float | None = None,
    argv: list[str] | None = None,
) -> dict[str, dict]:
    """Build ``names`` in order into ``out_dir``; an asset that fails is reported and the others go on.
    ``argv``: the command-line arguments recorded as each asset's command (default: this process's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, dict] = {}
    for name in names:
        t0 = time.perf_counter()
        print(f"{name}: building on {_device_name(device)} ({plan[name]}) ...", flush=True)
        try:
            if name in NETWORK_ASSETS:
                record = build_network(name, plan[name], out_dir, device, progress)
            elif name == "G_s_inr":
                record = build_inr(plan[name], out_dir, device, batch, progress)
            else:
                record = build_generator(
                    name,
                    plan[name],
                    out_dir,
                    device,
                    batch,
                    progress,
                    critic_share,
                    pool,
                    adv_share,
                    adv_weight,
                    lap_weight,
                )
        except Exception as err:  # keep going: one failed asset must not lose the others of a short GPU call
            print(f"{name}: FAILED after {time.perf_counter() - t0:.1f} s: {type(err).__name__}: {err}", flush=True)
            import traceback

            traceback.print_exc()
            records[name] = {"failed": f"{type(err).__name__}: {err}"}
            continue
        record = {**record, "device": _device_name(device), "wall_seconds": round(time.perf_counter() - t0, 1)}
        _write_record(out_dir, name, record, argv)  # a network trainer's own record, with the command added
        records[name] = record
        print(f"{name}: done in {record['wall_seconds']} s", flush=True)
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=ASSETS, default=None, help="build only this asset")
    parser.add_argument("--force", action="store_true", help="rebuild assets that exist (and drop their states)")
    parser.add_argument("--out-dir", type=Path, default=DATA)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="default: cpu, or gpu on cuda")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiply every step count (smoke runs)")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every time budget")
    parser.add_argument("--batch", type=int, default=8, help="generator batch size (every shipped generator used 8)")
    parser.add_argument(
        "--critic-share", type=float, default=0.15, help="G_s's D-only critic phase on a CPU, as a share of its budget"
    )
    parser.add_argument(
        "--adv-share", type=float, default=0.2, help="G_s's adversarial phase, as a share of its budget (0: none)"
    )
    parser.add_argument(
        "--adv-weight",
        type=float,
        default=ADV_WEIGHT,
        help=f"weight of the adversarial loss beside the paired L1 in every G_t (default {ADV_WEIGHT})",
    )
    parser.add_argument(
        "--lap-weight",
        type=float,
        default=None,
        help="weight of a Laplacian-pyramid L1 (a paired structure term) beside the paired L1 in every G_t "
        f"(default: per style, {LAP_WEIGHTS}, else 0)",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=0,
        help="generators train on a pool of this many paired renders, a quarter batch re-rendered per step "
        "(default 0: fresh renders every step, as every shipped generator)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    preset = PRESETS[args.preset or ("gpu" if device.type == "cuda" else "cpu")]
    plan = {
        k: Plan(
            max(1, round(p.steps * args.steps_scale)), None if p.budget_s is None else p.budget_s * args.budget_scale
        )
        for k, p in preset.items()
    }
    names = tuple(n for n in ASSETS if args.only is None or n in args.only)
    todo = []
    for name in names:
        if (args.out_dir / f"{name}.safetensors").exists() and not args.force:
            print(f"{name}: exists, skipped (use --force to rebuild)")
            continue
        if args.force:
            for work in args.out_dir.glob(f"_work/{name}") if name != "G_s" else args.out_dir.glob("_work/G_s*"):
                shutil.rmtree(work, ignore_errors=True)
        todo.append(name)
    batch, pool = args.batch, args.pool
    records = build(
        tuple(todo),
        args.out_dir,
        device,
        plan,
        batch,
        not args.quiet,
        critic_share=args.critic_share,
        pool=pool,
        adv_share=args.adv_share,
        adv_weight=args.adv_weight,
        lap_weight=args.lap_weight,
        argv=sys.argv[1:] if argv is None else list(argv),
    )
    failed = sorted(k for k, v in records.items() if "failed" in v)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
