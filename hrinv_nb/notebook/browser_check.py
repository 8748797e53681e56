"""A real-browser check of a slider notebook (``make browser-check``; not part of ``make test``).

    python -m hrinv_nb.notebook.browser_check                      # notebook 03, its smoke parameters
    python -m hrinv_nb.notebook.browser_check --notebook 01 --out runs/browser_check --keep

What it does, end to end:

1. writes a papermill-prepared copy of the notebook with its smoke parameters
   (``notebooks/params/smoke/<notebook>.yaml``, figures written inside the copy's folder) into a fresh
   temporary folder; the committed notebook and ``figures/`` are never touched;
2. starts JupyterLab on that folder: ``127.0.0.1``, a free port, a random token, no browser, its
   config, settings, workspaces and runtime files inside the temporary folder;
3. opens the copy in headless Chromium (Debian's ``chromium``, driven by playwright: the
   ``browser`` extra, ``pip install -e '.[browser]'``), runs every cell from the Run menu and waits
   for the kernel to finish;
4. finds the cell with the slider (``hrinv_nb.notebook.plots.precomputed_slider``), screenshots it
   (``before.png``), reads the image shown under the control (its ``src`` data), moves the slider one
   step with the keyboard (an arrow key on the focused slider handle), waits for the image to
   change, screenshots it again (``after.png``);
5. passes when the slider's value changed, the image's data changed, and exactly one image is shown
   in that cell's output area, under the control, both before and after the move.

The server is stopped by its process id (SIGTERM, then SIGKILL), and any kernel it left behind by
its own id, in a ``finally`` block; the browser is closed there too. Screenshots, the server's log
and ``result.json`` go to ``--out`` (default ``runs/browser_check/``, not committed), printed at the
end. Exit status: 0 pass, 1 fail, 2 could not run (no Chromium, no playwright, a bad notebook name).

Nothing runs on import; the functions that build the command line, the URL, the port and the
verdict are pure and tested in ``tests/test_browser_check.py`` (which never starts a browser).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HrinvError

REPO = Path(__file__).resolve().parents[2]
DEFAULT_NOTEBOOK = "03_w_vs_noise"  # the fastest slider notebook
DEFAULT_OUT = REPO / "runs" / "browser_check"
HOST = "127.0.0.1"
SLIDER_CALL = "precomputed_slider|live_controls"  # either kind of control (plots.control_panel)
# Chromium on a machine without network: without these it can hang on connections it tries to open.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
CHROMIUM_NAMES: tuple[str, ...] = ("chromium", "chromium-browser")
INSTALL_CHROMIUM = "install Debian's chromium (`apt-get install chromium`) or pass --chromium PATH"
INSTALL_PLAYWRIGHT = (
    "playwright is not installed: `make browser-check` installs it, or "
    "`pip install -c constraints.txt -e '.[browser]'` (the hrinv_nb[browser] extra). "
    "The browser is Debian's chromium: do not run `playwright install`."
)
# JupyterLab settings for the check: no news or update toasts over the screenshots, no requests out.
# The notebook starts its kernel without asking ("Select Kernel"; a dialog that appears anyway is accepted).
LAB_SETTINGS: dict[str, dict[str, object]] = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True},
}


class BrowserCheckError(HrinvError):
    """The check could not run (no Chromium, no playwright, no slider in the notebook, a server that did not start)."""


class BrowserCheckFailure(AssertionError):
    """The page did not look as the check expects (the check ran and failed)."""


@dataclass(frozen=True)
class ViewState:
    """What the slider's cell shows at one moment, as read from the page."""

    value: str  # the slider's readout
    images: int  # <img> elements in the cell's output area
    images_under_control: int  # of those, the ones in an output after the control's
    src_sha256: str  # hash of the first image's src (a data: URL), "" when there is none
    src_chars: int


@dataclass
class CheckResult:
    """The check's record (``result.json``)."""

    notebook: str
    passed: bool
    failures: list[str]
    before: ViewState | None = None
    after: ViewState | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    screenshots: list[str] = field(default_factory=list)
    chromium: str = ""
    browser_version: str = ""
    dialogs: list[str] = field(default_factory=list)  # JupyterLab dialogs the check accepted


# --- pure parts ------------------------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A TCP port on ``host`` that nothing listens on now (the OS picks it; a later bind may still race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def new_token() -> str:
    """A random token for the server (48 hex characters)."""
    return secrets.token_hex(24)


def lab_command(python: str, root: Path, port: int, token: str, host: str = HOST, as_root: bool = False) -> list[str]:
    """The command line that starts JupyterLab on ``root``: ``host`` only, ``port``, ``token``, no browser, no news.

    ``as_root``: the check runs as root (a container), which JupyterLab refuses without ``--allow-root``.
    """
    return [
        python,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ip={host}",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
        *(["--allow-root"] if as_root else []),
    ]


def lab_env(base: Mapping[str, str], state: Path) -> dict[str, str]:
    """``base`` with Jupyter's config, runtime, settings and workspace folders moved under ``state``.

    The user's own JupyterLab settings then neither change the check nor get changed by it.
    """
    env = dict(base)
    for var, sub in (
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
    ):
        env[var] = str(state / sub)
    return env


def write_lab_settings(settings_dir: Path, settings: Mapping[str, Mapping[str, object]] = LAB_SETTINGS) -> list[Path]:
    """Write ``settings`` (plugin id → values) as JupyterLab user settings under ``settings_dir``."""
    written = []
    for plugin, values in settings.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dict(values), indent=2))
        written.append(path)
    return written


def lab_url(port: int, token: str, notebook: str, host: str = HOST) -> str:
    """The URL that opens ``notebook`` (a file name in the server's root) in JupyterLab, with the token."""
    return f"http://{host}:{port}/lab/tree/{notebook}?token={token}"


def chromium_args(user_data_dir: Path) -> list[str]:
    """Chromium's flags for the check: :data:`CHROMIUM_ARGS` and a fresh ``--user-data-dir``."""
    return [*CHROMIUM_ARGS, f"--user-data-dir={user_data_dir}"]


def playwright_args(user_data_dir: Path) -> list[str]:
    """:func:`chromium_args` as playwright takes them: without ``--headless`` (its ``headless=True`` adds it)
    and without ``--user-data-dir`` (the persistent context's folder, which it passes itself)."""
    return [a for a in chromium_args(user_data_dir) if a != "--headless" and not a.startswith("--user-data-dir=")]


def find_chromium(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path:
    """The Chromium executable: ``explicit``, else ``$CHROMIUM``, else ``chromium`` / ``chromium-browser`` on PATH.

    Raises :class:`BrowserCheckError` saying how to install it when there is none.
    """
    env = os.environ if env is None else env
    for given, origin in ((explicit, "--chromium"), (env.get("CHROMIUM"), "$CHROMIUM")):
        if given:
            path = Path(given).expanduser()
            if path.is_file() and os.access(path, os.X_OK):
                return path
            raise BrowserCheckError(f"{origin} {given!r} is not an executable file; {INSTALL_CHROMIUM}")
    for name in CHROMIUM_NAMES:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return Path(found)
    raise BrowserCheckError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)} on PATH); {INSTALL_CHROMIUM}")


def chromium_version(chromium: Path) -> str:
    """``chromium --version``'s version number (``""`` when it does not say one)."""
    try:
        out = subprocess.run([str(chromium), "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    m = re.search(r"\d+(?:\.\d+)+", out)
    return m.group(0) if m else ""


def has_slider(notebook: Path) -> bool:
    """Whether a code cell of ``notebook`` calls :func:`~hrinv_nb.notebook.plots.precomputed_slider` or
    :func:`~hrinv_nb.notebook.plots.live_controls` (a live control: the move recomputes the view)."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    return any(
        c.get("cell_type") == "code" and re.search(rf"\b(?:{SLIDER_CALL})\(", "".join(c.get("source", [])))
        for c in cells
    )


def verdict(before: ViewState, after: ViewState) -> list[str]:
    """Why the slider check fails (empty: it passes): the value and the image changed, one image under the control."""
    failures = []
    for when, state in (("before", before), ("after", after)):
        if state.images != 1:
            failures.append(f"{when} the move: {state.images} images in the slider's output area, expected exactly 1")
        elif state.images_under_control != 1:
            failures.append(f"{when} the move: the image is not shown under the control")
    if before.value == after.value:
        failures.append(f"the slider's value did not change ({before.value!r})")
    if not before.src_sha256 or before.src_sha256 == after.src_sha256:
        failures.append("the image did not change after the slider moved")
    return failures


def stop_process(
    proc: subprocess.Popen, children: Sequence[int] = (), timeout_s: float = 30.0, grace_s: float = 10.0
) -> list[str]:
    """Stop ``proc`` by its pid (SIGTERM, SIGKILL after ``timeout_s``), then any of ``children`` still alive.

    ``children`` are the pids the process had started (its kernels), read while it runs; they are looked
    up before the server is stopped, so a pid reused later is never touched. A server stopped by SIGTERM
    shuts its kernels down itself; a child still running ``grace_s`` after the server exited is stopped by its
    pid (SIGTERM, then SIGKILL). Returns what had to be forced, for the log.
    """
    import psutil

    procs = []
    for pid in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    forced: list[str] = []
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
            forced.append(f"server pid {proc.pid}: SIGKILL after {timeout_s:g} s")
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for child in alive:
        try:
            child.terminate()
            _, still = psutil.wait_procs([child], timeout=grace_s)
            if still:
                child.kill()
            forced.append(f"left-over child pid {child.pid}: stopped")
        except psutil.NoSuchProcess:
            pass
    return forced


# --- the parts that run things ---------------------------------------------------------------------------------


def require_playwright() -> Any:
    """playwright's ``sync_playwright``; :class:`BrowserCheckError` saying how to install it when it is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as err:
        raise BrowserCheckError(INSTALL_PLAYWRIGHT) from err
    return sync_playwright


def prepare_copy(notebook: str, folder: Path) -> Path:
    """A papermill-prepared copy of ``notebook`` (a number or a name) with its smoke parameters, in ``folder``."""
    from . import mainjob

    (source,) = mainjob.select_notebooks(mainjob.list_notebooks(), [notebook])
    if not has_slider(source):
        raise BrowserCheckError(
            f"{source.name} has no slider (no precomputed_slider(...) or live_controls(...) call); pick one that has"
        )
    (copy,) = mainjob.prepare_smoke(folder, [source])
    return copy


def wait_for_lab(proc: subprocess.Popen, port: int, token: str, timeout_s: float) -> None:
    """Poll the server's ``/api/status`` until it answers; :class:`BrowserCheckError` if it exits or times out."""
    url = f"http://{HOST}:{port}/api/status"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrowserCheckError(f"JupyterLab exited with status {proc.returncode} before answering")
        try:
            request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise BrowserCheckError(f"JupyterLab did not answer on {url} within {timeout_s:g} s")


# JavaScript run in the page: the slider's cell (the first cell whose output holds a slider handle), as seen now.
_READ_STATE_JS = """
() => {
  const handle = document.querySelector('.jp-Notebook .jp-Cell .jp-OutputArea .noUi-handle');
  if (!handle) return null;
  const cell = handle.closest('.jp-Cell');
  const outputs = Array.from(cell.querySelectorAll('.jp-OutputArea-child'));
  const control = outputs.findIndex(o => o.contains(handle));
  const imgs = Array.from(cell.querySelectorAll('.jp-OutputArea img'));
  const under = imgs.filter(img => outputs.findIndex(o => o.contains(img)) > control);
  const readout = cell.querySelector('.widget-readout');
  return {value: readout ? readout.textContent.trim() : (handle.getAttribute('aria-valuetext') || ''),
          images: imgs.length, images_under_control: under.length,
          src: imgs.length ? (imgs[0].getAttribute('src') || '') : ''};
}
"""

# True once the first image in the slider's cell has a src other than the one given.
_IMAGE_CHANGED_JS = """
(old) => {
  const img = document.querySelector('.jp-Notebook .jp-Cell:has(.noUi-handle) .jp-OutputArea img');
  return img !== null && (img.getAttribute('src') || '') !== '' && img.getAttribute('src') !== old;
}
"""

# True once the notebook's kernel is connected and idle (the status bar's "<kernel> | Idle"; the toolbar's
# execution indicator alone says idle before a kernel is connected) and every code cell has run or was
# skipped (no "[*]" prompt).
_ALL_DONE_JS = """
() => {
  const kernel = document.querySelector('.jp-StatusBar-TextItem[title^="Change kernel"]');
  const connected = kernel !== null && /\\| Idle$/.test(kernel.textContent.trim())
    && !kernel.textContent.trim().startsWith('No Kernel');
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const prompts = Array.from(document.querySelectorAll('.jp-Notebook .jp-InputPrompt'));
  return connected && indicator !== null && indicator.getAttribute('data-status') === 'idle'
    && !prompts.some(p => p.textContent.includes('*'));
}
"""

# True once the slider's cell shows a slider handle and an image.
_SLIDER_SHOWN_JS = """
() => document.querySelector('.jp-Notebook .jp-Cell:has(.noUi-handle) .jp-OutputArea img') !== null
"""

# True once Run All has settled: the slider is shown, or every cell ran or was skipped (an error stops the rest).
_RUN_SETTLED_JS = (
    "() => (" + _SLIDER_SHOWN_JS.strip() + ")() || ((" + _ALL_DONE_JS.strip() + ")() && "
    "Array.from(document.querySelectorAll('.jp-Notebook .jp-InputPrompt')).some(p => /\\[\\d+\\]/.test(p.textContent)))"
)

# The last lines of the last error or stderr output in the notebook ("" when there is none).
_LAST_ERROR_JS = """
() => {
  const errs = Array.from(document.querySelectorAll(
    '.jp-Notebook .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'));
  return errs.length ? errs[errs.length - 1].textContent.trim().split('\\n').slice(-3).join(' | ') : '';
}
"""


def view_state(raw: Mapping[str, Any]) -> ViewState:
    """A :class:`ViewState` from what :data:`_READ_STATE_JS` returns (the image's ``src`` kept as its SHA-256)."""
    src = str(raw["src"])
    return ViewState(
        value=str(raw["value"]),
        images=int(raw["images"]),
        images_under_control=int(raw["images_under_control"]),
        src_sha256=hashlib.sha256(src.encode()).hexdigest() if src else "",
        src_chars=len(src),
    )


def _read_state(page: Any) -> tuple[ViewState, str]:
    raw = page.evaluate(_READ_STATE_JS)
    if raw is None:
        raise BrowserCheckFailure("the slider's cell is gone from the page")
    return view_state(raw), str(raw["src"])


def _accept_dialogs(page: Any, seen: list[str]) -> None:
    """Accept any JupyterLab dialog on the page (e.g. "Select Kernel"), noting its title in ``seen``."""
    dialogs = page.locator(".jp-Dialog")
    while dialogs.count() and dialogs.first.is_visible():
        seen.append(dialogs.first.locator(".jp-Dialog-header").first.inner_text().strip())
        dialogs.first.locator(".jp-Dialog-button.jp-mod-accept").first.click()
        page.wait_for_timeout(500)


def _wait_for(page: Any, what: str, predicates: Sequence[str], timeout_s: float, seen: list[str]) -> None:
    """Poll until every JavaScript predicate holds, accepting dialogs meanwhile; :class:`BrowserCheckFailure` on time-out."""
    deadline = time.monotonic() + timeout_s
    while True:
        _accept_dialogs(page, seen)
        if all(page.evaluate(js) for js in predicates):
            return
        if time.monotonic() > deadline:
            raise BrowserCheckFailure(f"{what}: not within {timeout_s:g} s")
        page.wait_for_timeout(250)


def _click_menu(page: Any, menu: str, item: str) -> None:
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=re.compile(rf"^{re.escape(menu)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(rf"^{re.escape(item)}$")).first.click()


def drive_browser(
    chromium: Path, url: str, profile: Path, out: Path, result: CheckResult, timeout_s: float
) -> tuple[ViewState, ViewState]:
    """Open ``url`` in headless Chromium, run all cells, move the slider; screenshots into ``out``.

    Fills ``result``'s timings, screenshots and dialogs accepted; returns the slider cell's state
    before and after the move. On an error a full-page ``failure.png`` is written first.
    """
    sync_playwright = require_playwright()
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            headless=True,
            args=playwright_args(profile),
            viewport={"width": 1400, "height": 1000},
            timeout=60_000,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(60_000)
            t0 = time.monotonic()
            page.goto(url)
            page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for()
            _wait_for(page, "the notebook's kernel to be idle", [_ALL_DONE_JS], 120, result.dialogs)
            result.seconds["open_notebook"] = round(time.monotonic() - t0, 2)

            t0 = time.monotonic()
            _click_menu(page, "Run", "Run All Cells")
            _wait_for(page, "Run All Cells to show the slider", [_RUN_SETTLED_JS], timeout_s, result.dialogs)
            if not page.evaluate(_SLIDER_SHOWN_JS):
                error = page.evaluate(_LAST_ERROR_JS)
                raise BrowserCheckFailure(f"the notebook ran without showing the slider's image; last error: {error!r}")
            _wait_for(page, "Run All Cells to finish", [_ALL_DONE_JS], timeout_s, result.dialogs)
            result.seconds["run_all"] = round(time.monotonic() - t0, 2)

            cell = page.locator(".jp-Notebook .jp-Cell:has(.noUi-handle)").first
            cell.scroll_into_view_if_needed()
            page.wait_for_timeout(500)  # let the image finish laying out
            before, before_src = _read_state(page)
            shot = out / "before.png"
            cell.screenshot(path=str(shot))
            result.screenshots.append(str(shot))

            handle = cell.locator(".noUi-handle").first
            at_min = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemin")
            t0 = time.monotonic()
            handle.focus()
            page.keyboard.press("ArrowRight" if at_min else "ArrowLeft")
            # The kernel is idle and the views are precomputed: a new image takes seconds, not minutes.
            page.wait_for_function(_IMAGE_CHANGED_JS, arg=before_src, timeout=min(timeout_s, 120) * 1000, polling=250)
            result.seconds["slider_to_new_image"] = round(time.monotonic() - t0, 2)
            _wait_for(page, "the kernel to be idle after the move", [_ALL_DONE_JS], timeout_s, result.dialogs)
            page.wait_for_timeout(1000)  # a second view, if one were displayed, would have arrived by now
            after, _ = _read_state(page)
            shot = out / "after.png"
            cell.screenshot(path=str(shot))
            result.screenshots.append(str(shot))
            return before, after
        except BaseException:
            try:
                shot = out / "failure.png"
                context.pages[0].screenshot(path=str(shot), full_page=True)
                result.screenshots.append(str(shot))
            except Exception:  # the browser itself may be gone
                pass
            raise
        finally:
            context.close()


def run_check(
    notebook: str = DEFAULT_NOTEBOOK,
    out: Path = DEFAULT_OUT,
    chromium: str | None = None,
    timeout_s: float = 600.0,
    keep: bool = False,
) -> CheckResult:
    """The whole check (see the module docstring); writes ``out/result.json`` and returns the record."""
    browser = find_chromium(chromium)
    require_playwright()  # before anything starts
    out.mkdir(parents=True, exist_ok=True)
    for old in ("before.png", "after.png", "failure.png", "result.json"):
        (out / old).unlink(missing_ok=True)
    work = Path(tempfile.mkdtemp(prefix="hrinv-browser-check-"))
    result = CheckResult(
        notebook=notebook, passed=False, failures=[], chromium=str(browser), browser_version=chromium_version(browser)
    )
    proc: subprocess.Popen | None = None
    children: list[int] = []
    log = (out / "lab.log").open("w")
    t_start = time.monotonic()
    try:
        copy = prepare_copy(notebook, work / "nb")
        result.notebook = copy.stem
        state = work / "jupyter"
        write_lab_settings(state / "settings")
        port, token = free_port(), new_token()
        cmd = lab_command(sys.executable, copy.parent, port, token, as_root=os.geteuid() == 0)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, env=lab_env(os.environ, state), stdout=log, stderr=subprocess.STDOUT)
        print(f"browser-check: JupyterLab pid {proc.pid} on http://{HOST}:{port}/ (log: {out / 'lab.log'})")
        wait_for_lab(proc, port, token, timeout_s=120)
        result.seconds["start_server"] = round(time.monotonic() - t0, 2)
        try:
            before, after = drive_browser(
                browser, lab_url(port, token, copy.name), work / "chromium-profile", out, result, timeout_s
            )
        finally:
            import psutil

            try:
                children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                children = []
        result.before, result.after = before, after
        result.failures = verdict(before, after)
        result.passed = not result.failures
    except HrinvError:  # could not run: no playwright, a bad notebook name or parameter, a server that did not start
        raise
    except Exception as err:  # a timeout or a page that did not look as expected: a failed check, with the reason
        result.failures.append(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    finally:
        if proc is not None:
            for line in stop_process(proc, children):
                print(f"browser-check: {line}")
        log.close()
        if keep:
            print(f"browser-check: kept the temporary folder {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    result.seconds["total"] = round(time.monotonic() - t_start, 2)
    (out / "result.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hrinv_nb.notebook.browser_check",
        description="Run a slider notebook in JupyterLab in headless Chromium, move the slider, check the view.",
    )
    parser.add_argument("--notebook", default=DEFAULT_NOTEBOOK, help=f"number or name (default {DEFAULT_NOTEBOOK})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="screenshots, log and result.json")
    parser.add_argument("--chromium", default=None, help="the Chromium executable (default: $CHROMIUM or on PATH)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds for running the notebook (default 600)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (notebook copy, profile)")
    args = parser.parse_args(argv)
    try:
        result = run_check(args.notebook, args.out, args.chromium, args.timeout, args.keep)
    except HrinvError as err:
        print(f"browser-check: cannot run: {err}", file=sys.stderr)
        return 2
    for name in ("before", "after"):
        state = getattr(result, name)
        if state is not None:
            print(
                f"browser-check: {name}: value {state.value!r}, {state.images} image(s) in the output area "
                f"({state.images_under_control} under the control), src sha256 {state.src_sha256[:12]}"
            )
    print(f"browser-check: times (s): {result.seconds}")
    print(
        f"browser-check: screenshots: {', '.join(result.screenshots) or '(none)'}; record: {args.out / 'result.json'}"
    )
    if result.passed:
        print(f"browser-check: PASS ({result.notebook}, Chromium {result.browser_version})")
        return 0
    print(f"browser-check: FAIL ({result.notebook}): " + "; ".join(result.failures))
    return 1


if __name__ == "__main__":
    sys.exit(main())
