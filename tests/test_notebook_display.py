"""How the notebook helpers display in a live Jupyter: one view per slider, updated in place; tables shown
once and never echoed as ``Out[n]``; a stacked figure shown without its parts.

The in-process tests run the helpers under IPython's ``InteractiveShell`` with a capturing display
publisher (what a kernel would send to the frontend); one test drives a real kernel and moves a slider
with the comm message a browser sends.
"""

from __future__ import annotations

import queue
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from hrinv_nb.notebook import plots, report

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def shell():
    """A fresh ``InteractiveShell`` whose displays are recorded (with their display ids and update flags)."""
    pytest.importorskip("ipywidgets")
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.core.pylabtools import select_figure_formats

    assert not InteractiveShell.initialized(), "another test left an InteractiveShell behind"
    saved = sys.modules.get("__main__"), sys.displayhook, sys.excepthook
    sh = InteractiveShell.instance()
    sh.display_pub = CapturingDisplayPublisher()
    select_figure_formats(sh, {"png"})  # figures display as image/png, as under the inline backend
    plt.close("all")
    try:
        yield sh
    finally:
        plt.close("all")
        InteractiveShell.clear_instance()
        sys.modules["__main__"], sys.displayhook, sys.excepthook = saved


def _run(sh, code: str, **names):
    """Run ``code`` as one notebook cell; return its result (the value IPython would echo as ``Out[n]``)."""
    sh.user_ns.update(plots=plots, report=report, **names)
    result = sh.run_cell(code, store_history=True)
    result.raise_error()
    return result.result


def _figure(value) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(1.5, 1.0))
    ax.plot([0, 1], [0, value])
    ax.set_title(f"s = {value}")
    return fig


def test_slider_shows_the_control_and_one_figure_then_updates_that_figure(shell):
    import ipywidgets as widgets

    outputs = shell.display_pub.outputs
    control = widgets.SelectionSlider(options=[0.0, 0.5, 1.0], value=1.0, description="noise scale")
    echoed = _run(shell, "plots.precomputed_slider(control, render)", control=control, render=_figure)

    assert echoed is None, "the cell must not echo a value"
    assert "Precomputed" in outputs[0]["data"]["text/markdown"], "a caption says the views are precomputed"
    outputs = outputs[1:]
    assert [WIDGET in o["data"] for o in outputs] == [True, False], "the control first, then one view under it"
    assert [o["data"][WIDGET]["model_id"] for o in outputs[:1]] == [control.model_id]
    first = outputs[1]
    assert "image/png" in first["data"] and not first["update"]
    display_id = first["transient"]["display_id"]
    assert display_id, "the view carries a display id, so it can be updated in place"
    assert plt.get_fignums() == [], "the displayed figure is closed (the inline backend would show it again)"

    control.value = 0.5  # what a move in the browser does to the kernel-side widget
    outputs = shell.display_pub.outputs[1:]
    assert len(outputs) == 3, "a move adds no new output"
    moved = outputs[2]
    assert moved["update"] and moved["transient"]["display_id"] == display_id, "it updates the same display"
    assert "image/png" in moved["data"] and moved["data"]["image/png"] != first["data"]["image/png"]
    assert plt.get_fignums() == []

    control.value = 1.0
    outputs = shell.display_pub.outputs[1:]
    assert len(outputs) == 4 and outputs[3]["update"] and outputs[3]["data"]["image/png"] == first["data"]["image/png"]


def test_live_controls_recompute_one_view_from_all_control_values(shell):
    import ipywidgets as widgets

    calls = []

    def render(scale, label):
        calls.append((scale, label))
        return _figure(scale if label == "up" else -scale)

    outputs = shell.display_pub.outputs
    scale = widgets.FloatSlider(value=1.0, min=0.0, max=2.0, continuous_update=True)
    label = widgets.Dropdown(options=["up", "down"], value="up")
    echoed = _run(
        shell, "plots.live_controls([scale, label], render, cost='under 1 s')", scale=scale, label=label, render=render
    )

    assert echoed is None
    assert "Live" in outputs[0]["data"]["text/markdown"] and "under 1 s" in outputs[0]["data"]["text/markdown"]
    box = outputs[1]["data"][WIDGET]["model_id"]
    assert box not in (scale.model_id, label.model_id), "two controls are shown together in one box"
    assert scale.continuous_update is False, "a live slider recomputes once per release, not per pixel dragged"
    assert calls == [(1.0, "up")] and "image/png" in outputs[2]["data"]
    display_id = outputs[2]["transient"]["display_id"]

    label.value = "down"
    scale.value = 0.5
    assert calls == [(1.0, "up"), (1.0, "down"), (0.5, "down")], "each change renders from every control's value"
    assert len(outputs) == 5 and all(o["update"] and o["transient"]["display_id"] == display_id for o in outputs[3:])
    assert outputs[3]["data"]["image/png"] != outputs[4]["data"]["image/png"]
    assert plt.get_fignums() == []


def test_slider_renderer_must_return_its_view(shell):
    import ipywidgets as widgets

    def draws_instead(value):
        plt.show()

    control = widgets.Dropdown(options=["a", "b"], value="a")
    with pytest.raises(AssertionError, match="returned None"):
        plots.precomputed_slider(control, draws_instead)


def test_show_table_displays_once_and_echoes_nothing(shell):
    outputs = shell.display_pub.outputs
    header, rows = ["loss", "PSNR (dB)"], [["VGG conv", 25.9123], ["MSE", None]]
    echoed = _run(shell, "report.show_table(header, rows)", header=header, rows=rows)

    assert echoed is None, "show_table must not return the table's text (it would print as Out[n])"
    assert len(outputs) == 1
    assert outputs[0]["data"]["text/markdown"] == report.markdown_table(header, rows)
    assert "| VGG conv | 25.9 |" in outputs[0]["data"]["text/markdown"]


def test_claims_table_displays_once_and_echoes_nothing(shell):
    outputs = shell.display_pub.outputs
    claims = [report.Claim("n carries detail", "paper says so", "0.07 dB", False), report.Claim("c", "p", "o", None)]
    echoed = _run(shell, "report.claims_table(claims)", claims=claims)

    assert echoed is None
    assert [o["data"]["text/markdown"] for o in outputs] == [report.claims_markdown(claims)]
    assert "| n carries detail | paper says so | 0.07 dB | NOT held |" in report.claims_markdown(claims)
    assert "not testable" in report.claims_markdown(claims)


def test_show_table_prints_plain_text_outside_ipython(monkeypatch, capsys):
    import IPython

    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert report.show_table(["a", "b"], [[1, 0.5]]) is None
    assert capsys.readouterr().out == "| a | b |\n| --- | --- |\n| 1 | 0.5 |\n"


def test_stack_figures_closes_its_parts():
    plt.close("all")
    a, b = plt.figure(figsize=(2, 1)), plt.figure(figsize=(3, 1))
    fig = plots.stack_figures([a, b], dpi=50)
    try:
        assert plt.get_fignums() == [fig.number], "only the stacked figure stays open (and is shown)"
    finally:
        plt.close("all")


def _iopub_until_idle(kc, parent_id: str, timeout: float = 120.0) -> list[dict]:
    """The kernel's iopub messages answering request ``parent_id``, up to its idle status."""
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") != parent_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages
    raise TimeoutError(f"no idle status for {parent_id} within {timeout} s: {[m['msg_type'] for m in messages]}")


SLIDER_CELL = """
import ipywidgets as widgets
import matplotlib.pyplot as plt
from hrinv_nb.notebook import plots


def render(value):
    fig, ax = plt.subplots(figsize=(1.5, 1.0))
    ax.set_title(f"s = {value}")
    return fig


control = widgets.SelectionSlider(options=[0.0, 0.5, 1.0], value=1.0)
plots.precomputed_slider(control, render)
"""


def test_slider_in_a_kernel_updates_in_place_when_the_frontend_moves_it():
    pytest.importorskip("ipywidgets")
    manager = pytest.importorskip("jupyter_client.manager")
    km, kc = manager.start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        msgs = _iopub_until_idle(kc, kc.execute(SLIDER_CELL))
        assert [m for m in msgs if m["msg_type"] == "error"] == []
        shown = [m["content"] for m in msgs if m["msg_type"] in ("display_data", "execute_result")]
        assert "text/markdown" in shown[0]["data"], "first the caption (precomputed or live)"
        shown = shown[1:]
        assert [WIDGET in c["data"] for c in shown] == [True, False], "the control, then exactly one view"
        assert "image/png" in shown[1]["data"]
        display_id = shown[1]["transient"]["display_id"]
        model_id = shown[0]["data"][WIDGET]["model_id"]

        # The browser moving the slider: a comm message setting the widget's synced index.
        move = kc.session.msg(
            "comm_msg", {"comm_id": model_id, "data": {"method": "update", "state": {"index": 0}, "buffer_paths": []}}
        )
        kc.shell_channel.send(move)
        msgs = _iopub_until_idle(kc, move["header"]["msg_id"])
        assert [m for m in msgs if m["msg_type"] in ("display_data", "execute_result", "stream", "error")] == []
        updates = [m["content"] for m in msgs if m["msg_type"] == "update_display_data"]
        assert len(updates) == 1 and updates[0]["transient"]["display_id"] == display_id
        assert "image/png" in updates[0]["data"] and updates[0]["data"]["image/png"] != shown[1]["data"]["image/png"]

        msgs = _iopub_until_idle(kc, kc.execute("print(control.value, plt.get_fignums())"))
        assert [m["content"]["text"] for m in msgs if m["msg_type"] == "stream"] == ["0.0 []\n"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
