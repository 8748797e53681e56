"""The pure parts of ``make browser-check`` (hrinv_nb.notebook.browser_check): port, token, command lines,
settings, the verdict. Never starts a browser or a server: ``make test`` does not need Chromium."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hrinv_nb.notebook import browser_check as bc


def _state(value: str = "1.0", images: int = 1, under: int = 1, sha: str = "aa") -> bc.ViewState:
    return bc.ViewState(value=value, images=images, images_under_control=under, src_sha256=sha, src_chars=10)


def test_free_port_is_bindable_on_localhost():
    port = bc.free_port()
    assert 0 < port < 65536
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((bc.HOST, port))  # nothing holds it


def test_tokens_are_random_and_long():
    tokens = {bc.new_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(len(t) == 48 and int(t, 16) >= 0 for t in tokens)


def test_lab_command_listens_on_localhost_with_the_token_and_no_browser(tmp_path):
    cmd = bc.lab_command("/venv/bin/python", tmp_path, 8123, "abc")
    assert cmd[:3] == ["/venv/bin/python", "-m", "jupyterlab"]
    assert {"--no-browser", "--ip=127.0.0.1", "--port=8123", "--port-retries=0"} <= set(cmd)
    assert "--IdentityProvider.token=abc" in cmd
    assert f"--ServerApp.root_dir={tmp_path}" in cmd
    assert "--allow-root" not in cmd
    assert "--allow-root" in bc.lab_command("python", tmp_path, 1, "t", as_root=True)
    assert not any(a.startswith("--ip=0") for a in cmd)


def test_lab_url_opens_the_notebook_with_the_token():
    assert (
        bc.lab_url(8123, "abc", "03_w_vs_noise.ipynb") == "http://127.0.0.1:8123/lab/tree/03_w_vs_noise.ipynb?token=abc"
    )


def test_lab_env_moves_jupyters_folders_under_the_state_folder(tmp_path):
    env = bc.lab_env({"PATH": "/bin", "JUPYTER_CONFIG_DIR": "/home/me/.jupyter"}, tmp_path)
    assert env["PATH"] == "/bin"
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        assert env[var].startswith(str(tmp_path))


def test_lab_settings_are_written_where_jupyterlab_reads_them(tmp_path):
    paths = bc.write_lab_settings(tmp_path)
    notification = tmp_path / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    tracker = tmp_path / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    assert sorted(paths) == sorted([notification, tracker])
    assert json.loads(notification.read_text())["checkForUpdates"] is False
    assert json.loads(tracker.read_text())["autoStartDefaultKernel"] is True


def test_chromium_flags_for_a_machine_without_network(tmp_path):
    args = bc.chromium_args(tmp_path / "profile")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"):
        assert flag in args
    assert args[-1] == f"--user-data-dir={tmp_path / 'profile'}"
    pw = bc.playwright_args(tmp_path / "profile")
    assert "--headless" not in pw and not any(a.startswith("--user-data-dir") for a in pw)
    assert "--disable-background-networking" in pw


def test_find_chromium_prefers_the_explicit_path_and_says_how_to_install(tmp_path):
    exe = tmp_path / "chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    assert bc.find_chromium(str(exe), env={"PATH": ""}) == exe
    assert bc.find_chromium(None, env={"PATH": str(tmp_path)}) == exe
    assert bc.find_chromium(None, env={"PATH": "", "CHROMIUM": str(exe)}) == exe
    with pytest.raises(bc.BrowserCheckError, match="apt-get install chromium"):
        bc.find_chromium(None, env={"PATH": str(tmp_path / "nowhere")})
    with pytest.raises(bc.BrowserCheckError, match="--chromium"):
        bc.find_chromium(str(tmp_path / "missing"), env={"PATH": ""})


def test_without_playwright_the_error_names_the_extra_not_playwright_install(monkeypatch):
    assert "'.[browser]'" in bc.INSTALL_PLAYWRIGHT
    assert "do not run `playwright install`" in bc.INSTALL_PLAYWRIGHT
    monkeypatch.setitem(sys.modules, "playwright", None)
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)
    with pytest.raises(bc.BrowserCheckError, match=r"make browser-check"):
        bc.require_playwright()


def test_has_slider_reads_the_code_cells(tmp_path):
    def notebook(*sources: tuple[str, str]) -> Path:
        path = tmp_path / f"nb{len(list(tmp_path.iterdir()))}.ipynb"
        cells = [{"cell_type": kind, "source": [src], "metadata": {}} for kind, src in sources]
        path.write_text(json.dumps({"cells": cells}))
        return path

    assert bc.has_slider(notebook(("code", "plots.precomputed_slider(\n  s, f)")))
    assert not bc.has_slider(notebook(("markdown", "precomputed_slider(x)"), ("code", "print(1)")))


def test_view_state_keeps_a_hash_of_the_image_data():
    raw = {"value": "0.5", "images": 1, "images_under_control": 1, "src": "data:image/png;base64,AAAA"}
    state = bc.view_state(raw)
    assert state.value == "0.5" and state.src_chars == len(raw["src"]) and len(state.src_sha256) == 64
    assert bc.view_state({**raw, "src": ""}).src_sha256 == ""


def test_verdict_passes_one_changed_image_under_a_moved_control():
    assert bc.verdict(_state("1.0", sha="aa"), _state("0.5", sha="bb")) == []


@pytest.mark.parametrize(
    ("before", "after", "reason"),
    [
        (_state("1.0", sha="aa"), _state("0.5", sha="aa"), "image did not change"),
        (_state("1.0", sha="aa"), _state("1.0", sha="bb"), "value did not change"),
        (_state("1.0", sha="aa"), _state("0.5", images=2, sha="bb"), "after the move: 2 images"),
        (_state("1.0", images=0, sha=""), _state("0.5", sha="bb"), "before the move: 0 images"),
        (_state("1.0", under=0, sha="aa"), _state("0.5", sha="bb"), "not shown under the control"),
    ],
)
def test_verdict_names_what_failed(before, after, reason):
    failures = bc.verdict(before, after)
    assert failures and any(reason in f for f in failures), failures


def test_stop_process_stops_a_server_and_its_left_over_children_by_pid():
    code = (
        "import signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))  # exits, leaving its child behind\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    forced = bc.stop_process(proc, [child], timeout_s=10, grace_s=1)
    proc.stdout.close()
    assert proc.returncode == 0
    assert forced == [f"left-over child pid {child}: stopped"]
    assert _gone(child)


def _gone(pid: int, wait_s: float = 5.0) -> bool:
    """``pid`` has exited (a zombie not yet reaped by whoever adopted it counts as exited)."""
    import psutil

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_importing_the_module_runs_nothing():
    out = subprocess.run(
        [sys.executable, "-c", "import hrinv_nb.notebook.browser_check as m; print(m.DEFAULT_NOTEBOOK)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "03_w_vs_noise"
