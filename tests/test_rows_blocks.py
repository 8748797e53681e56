"""hrinv_nb.studies.rows_blocks: which W+ rows drive which synthesis layers."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_generator

from hrinv_nb.networks import SynthesisNetwork
from hrinv_nb.studies.rows_blocks import (
    architecture_row_layers,
    blocks_of_rows,
    describe_rows,
    row_layers,
    rows_for_blocks,
)


@pytest.mark.parametrize("resolution", [128, 1024])
def test_architecture_mapping_matches_a_built_network(resolution):
    # A weight-light synthesis network of the same architecture (4 channels) gives the same mapping as the formula.
    synth = SynthesisNetwork(
        w_dim=4, img_resolution=resolution, img_channels=3, channel_base=4 * resolution, channel_max=4
    )
    G = type("G", (), {"synthesis": synth})()
    assert row_layers(G) == architecture_row_layers(resolution)


def test_paper_early_rows_drive_b4_to_b16_at_1024_and_at_128():
    big, toy = architecture_row_layers(1024), architecture_row_layers(128)
    assert len(big) == 18 and len(toy) == 12
    assert (
        big[0] == ["b4.conv1"] and big[1] == ["b4.torgb", "b8.conv0"] and big[16:] == [["b1024.conv1"], ["b1024.torgb"]]
    )
    for mapping in (big, toy):
        assert blocks_of_rows(range(5), mapping, convs_only=True) == [4, 8, 16]
        assert rows_for_blocks([4, 8, 16], mapping) == (0, 1, 2, 3, 4)
    assert "b16.conv1" in describe_rows((0, 1, 2, 3, 4), big) and describe_rows((0, 1, 2, 3, 4), big).startswith(
        "rows 0–4 of 18"
    )


def test_mapping_is_what_the_generator_reads():
    # Changing row i of ws changes exactly the layers the mapping names: check it on b4 (row 0 only reaches b4.conv1).
    G = tiny_generator(seed=0)
    mapping = row_layers(G)
    assert len(mapping) == G.num_ws
    seen = {}
    for name in ("conv0", "conv1", "torgb"):
        for r in G.synthesis.block_resolutions:
            layer = getattr(getattr(G.synthesis, f"b{r}"), name, None)
            if layer is not None:
                layer.affine.register_forward_hook(
                    lambda m, inp, out, key=f"b{r}.{name}": seen.setdefault(key, inp[0].detach().clone())
                )
    ws = torch.randn(1, G.num_ws, G.w_dim)
    with torch.no_grad():
        G.synthesis(ws, noise_mode="const")
    for i, layers in enumerate(mapping):
        for layer in layers:
            assert torch.equal(seen[layer], ws[:, i]), f"{layer} does not read row {i}"
