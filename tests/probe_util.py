"""Run a loader on many files in one child process under a memory cap; report, per file, the error
(type, message, cause chain), the time and the peak RSS growth, and a summary of what loaded.

Used by the checkpoint security test (resource bombs) and the fuzz tests: a loader that hangs or
allocates far too much shows up as a failed test rather than a machine out of memory.

The child imports torch and the loader, then caps its address space (RLIMIT_AS) at ``cap_mb`` above
its virtual size at that point. Peak memory is read from ``VmHWM`` in /proc/self/status, reset
before each file by writing 5 to /proc/self/clear_refs: ``ru_maxrss`` is no good here, because a
child started from a large pytest process inherits the parent's peak at exec (measured: a child
of a 1.1 GB parent reported ru_maxrss 1110 MB while its VmHWM was 10 MB), so growth up to the
parent's size would go unseen. Where clear_refs cannot be written, VmHWM (which is not inherited)
still bounds the growth from the start of the run, so per-file values only over-report.

Run as ``python tests/probe_util.py`` it is the child: a JSON request on stdin, one JSON line per
file on stdout (``probe`` below builds the request and reads the lines).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEMORY_CAP_MB = 1536  # address space allowed above what the child holds after importing torch
_LINE = "PROBE "


def probe(
    paths: list[Path],
    loader: str = "hrinv_nb.checkpoints:load_networks",
    args: tuple = (),
    kwargs: dict | None = None,
    cap_mb: int = MEMORY_CAP_MB,
    timeout: float = 150,
) -> dict[str, dict]:
    """``loader(path, *args, **kwargs)`` on each path, in order, in one capped child process.

    Returns ``{str(path): result}`` with ``error`` (None or the exception's type name), ``mro``,
    ``message``, ``chain`` (type names of the cause chain), ``seconds``, ``rss_growth_mb`` (peak RSS
    during the call minus RSS before it), ``capped`` (a MemoryError in the chain: the cap was hit)
    and ``result`` (a JSON summary of the return value: tensors as shape, dtype, finite, min, max).
    Fails if the child dies (e.g. killed for memory) or runs past ``timeout``, naming the file it
    was on.
    """
    request = {"loader": loader, "args": list(args), "kwargs": kwargs or {}, "cap_mb": cap_mb}
    request["paths"] = [str(p) for p in paths]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(
            [sys.executable, __file__],
            input=json.dumps(request),
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        out = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
        done = _parse(out)
        running = next((p for p in request["paths"] if p not in done), "?")
        raise AssertionError(f"the probe ran past {timeout} s, on {running} ({len(done)} files done)") from None
    results = _parse(proc.stdout)
    assert proc.returncode == 0 and len(results) == len(paths), (
        f"the probe process died ({proc.returncode}) after {len(results)} of {len(paths)} files: {proc.stderr[-3000:]}"
    )
    return results


def _parse(stdout: str) -> dict[str, dict]:
    results = {}
    for line in stdout.splitlines():
        if line.startswith(_LINE):
            out = json.loads(line[len(_LINE) :])
            results[out.pop("path")] = out
    return results


# ----------------------------------------------------------------------------- the child


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        return int(f.read().split(f"{key}:")[1].split()[0]) / 1024


def _describe(obj, torch, depth: int = 0):
    """A JSON summary of a loader's return value."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        out = {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
        if t.numel() and not t.is_complex():
            v = t.double()
            out.update(finite=bool(torch.isfinite(v).all()), min=float(v.min()), max=float(v.max()))
        return out
    if depth < 3 and isinstance(obj, (tuple, list)):
        return [_describe(x, torch, depth + 1) for x in obj]
    if depth < 3 and isinstance(obj, dict):
        return {str(k): _describe(v, torch, depth + 1) for k, v in obj.items()}
    return {"type": type(obj).__qualname__}


def _child() -> None:
    import gc
    import importlib
    import resource
    import time
    import warnings

    import torch

    request = json.loads(sys.stdin.read())
    module, name = request["loader"].split(":")
    loader = getattr(importlib.import_module(module), name)
    torch.set_num_threads(1)
    vm = int(_status_mb("VmSize") * 2**20)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + request["cap_mb"] * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    gc.collect()
    gc.freeze()  # the per-file collections below then skip torch's objects: 0.1 s each -> microseconds
    warnings.simplefilter("ignore")  # e.g. "inferred generator arguments" for a .pt that lost them
    results, sys.stdout = sys.stdout, sys.stderr  # whatever a loader prints stays out of the results

    def reset_peak() -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    for p in request["paths"]:
        gc.collect()  # the previous file's cycles, so that RSS before this file is what the process needs
        reset_peak()
        rss0 = _status_mb("VmRSS")
        t0 = time.perf_counter()
        try:
            value = loader(p, *request["args"], **request["kwargs"])
            out = {"error": None, "mro": [], "message": "", "chain": []}
        except BaseException as e:
            value, chain, c = None, [], e
            while c is not None and len(chain) < 10:
                chain.append(type(c).__name__)
                c = c.__cause__ or c.__context__
            out = {
                "error": type(e).__name__,
                "mro": [k.__name__ for k in type(e).__mro__],
                "message": str(e)[:3000],
                "chain": chain,
            }
        out["seconds"] = time.perf_counter() - t0
        out["rss_growth_mb"] = _status_mb("VmHWM") - rss0
        out["capped"] = "MemoryError" in out["chain"] or "can't allocate" in out["message"]
        try:
            out["result"] = _describe(value, torch)
        except Exception as e:  # a summary that fails must not hide the other files
            out["result"] = {"describe_error": f"{type(e).__name__}: {e}"}
        del value
        print(_LINE + json.dumps({"path": p, **out}), file=results, flush=True)


if __name__ == "__main__":
    _child()
