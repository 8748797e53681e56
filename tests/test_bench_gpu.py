"""benchmarks/bench_gpu.py runs on a CPU in its tiny mode, writes its JSON, and keeps to its time budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"
TINY = ["--device", "cpu", "--resolution", "32", "--steps", "3", "--lso-steps", "2", "--channel-base", "256",
        "--channel-max", "32", "--w-avg-samples", "50", "--batch", "2"]  # fmt: skip


def _run(out: Path, *extra: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *TINY, "--out", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    return proc, time.perf_counter() - start


def test_tiny_run_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc, _ = _run(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["meta"]["stopped_by_budget"] is False
    rows = {(r["task"], r["variant"]): r for r in data["rows"]}
    assert ("generation", "fp32") in rows and ("lso", "fp32") in rows and ("inversion", "fp32") in rows
    assert not [r for r in data["rows"] if "error" in r], data["rows"]
    fp32 = rows[("inversion", "fp32")]
    assert fp32["steps_run"] == 3 and not fp32["extrapolated"] and fp32["psnr_db"] > 0
    fast = rows[("inversion", "bf16 VGG + G hi-res + CL")]
    assert "psnr_delta_db" in fast and isinstance(fast["psnr_ok"], bool)
    batched = rows[("inversion", "bf16 VGG + G hi-res + CL, batch 2")]
    assert len(batched["psnr_db_per_image"]) == 2 and batched["time_per_image_s"] > 0
    assert "skipped" in rows[("inversion", "fp32 + compile(G)")]  # compile is tried on CUDA only
    assert "| inversion | fp32 |" in proc.stdout


def test_budget_stops_the_run_and_keeps_the_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc, wall = _run(out, "--budget-s", "6", "--steps", "200")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert wall < 6 + 5  # the budget counts from the interpreter's start; a few seconds of exit and startup
    assert data["meta"].get("stopped_by_budget") is True or any(
        r.get("extrapolated") or "skipped" in r for r in data["rows"]
    )
