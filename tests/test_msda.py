"""The MSDA reference against a direct per-sample implementation of its definition, and the op's registration."""

import numpy as np
import pytest
import torch

from edge_lwdetr.model.msda import level_start_index, ms_deform_attn_reference
from edge_lwdetr.model.vit import bicubic_resize_matrix


def msda_by_definition(value, shapes, locations, weights):
    """out[n,q,m,:] = sum over l,p of w * bilinear(value level l, x*W-0.5, y*H-0.5), zero outside the map."""
    value, locations, weights = (t.double().numpy() for t in (value, locations, weights))
    batch, _, heads, channels = value.shape
    _, queries, _, levels, points, _ = locations.shape
    starts = level_start_index(shapes)
    out = np.zeros((batch, queries, heads, channels))
    for n in range(batch):
        for q in range(queries):
            for m in range(heads):
                for lvl, (h, w) in enumerate(shapes):
                    grid = value[n, starts[lvl] : starts[lvl] + h * w, m].reshape(h, w, channels)
                    for p in range(points):
                        x = locations[n, q, m, lvl, p, 0] * w - 0.5
                        y = locations[n, q, m, lvl, p, 1] * h - 0.5
                        x0, y0 = int(np.floor(x)), int(np.floor(y))
                        sample = np.zeros(channels)
                        for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)):
                            if 0 <= yy < h and 0 <= xx < w:
                                sample += (1 - abs(x - xx)) * (1 - abs(y - yy)) * grid[yy, xx]
                        out[n, q, m] += weights[n, q, m, lvl, p] * sample
    return out


@pytest.mark.parametrize("shapes, heads, channels, points", [(((6, 5),), 2, 4, 2), (((8, 8), (2, 3)), 3, 16, 4)])
def test_reference_matches_definition(shapes, heads, channels, points):
    generator = torch.Generator().manual_seed(0)
    batch, queries, levels = 2, 7, len(shapes)
    tokens = sum(h * w for h, w in shapes)
    value = torch.randn(batch, tokens, heads, channels, generator=generator)
    # Locations reach outside [0, 1] so zero padding is exercised.
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=generator) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, levels * points, generator=generator).softmax(-1)
    weights = weights.reshape(batch, queries, heads, levels, points)

    out = ms_deform_attn_reference(value, shapes, locations, weights)
    assert out.shape == (batch, queries, heads, channels)
    np.testing.assert_allclose(out.double().numpy(), msda_by_definition(value, shapes, locations, weights), atol=1e-5)



@pytest.mark.parametrize("size_out", [4, 8, 14, 20, 40, 56])
def test_bicubic_matrix_equals_interpolate(size_out):
    table = torch.randn(1, 8, 14, 14)
    reference = torch.nn.functional.interpolate(table, size=(size_out, size_out), mode="bicubic", align_corners=False)
    matrix = torch.from_numpy(bicubic_resize_matrix(14, size_out)).float()
    resized = torch.einsum("hi,bcij,wj->bchw", matrix, table, matrix)
    assert (resized - reference).abs().max().item() < 1e-5
