"""Channel grids as arrays and PNG files."""

import numpy as np
import pytest
from PIL import Image

from cnnlab.charts import grids


def test_tiles_are_laid_out_row_by_row_with_gaps():
    tiles = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    out = grids.tile(tiles, columns=2, gap=1)
    assert out.shape == (3 * 3 - 1, 2 * 4 - 1)
    np.testing.assert_array_equal(out[3:5, 4:7], tiles[3])
    assert np.isnan(out[2]).all() and np.isnan(out[:, 3]).all()
    assert np.isnan(out[6:8, 4:7]).all()  # no sixth tile
    with pytest.raises(ValueError, match=r"Received: tiles.shape=\(0, 2, 2\)"):
        grids.tile(np.zeros((0, 2, 2)))


def test_the_view_keeps_the_pixels_the_model_was_given():
    image = np.random.default_rng(0).integers(0, 256, (4, 4, 3))
    np.testing.assert_array_equal(grids.view_to_uint8(image / 255.0), image)
    np.testing.assert_array_equal(grids.view_to_uint8(image / 127.5 - 1.0), image)


def test_feature_and_filter_grids_are_written_as_pngs(tmp_path):
    values = np.random.default_rng(0).normal(size=(8, 8, 10)).astype(np.float32)
    grid = grids.feature_grid_png(values)
    assert grid.dtype == np.uint8 and grid.shape == (3 * 32 + 2 * 2, 4 * 32 + 3 * 2)  # tiles enlarged 4x
    path = grids.write_png(tmp_path / "maps.png", grid)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
    first = grids.filter_grid_png(np.random.default_rng(1).normal(size=(3, 3, 3, 6)))
    assert first.shape[-1] == 3  # RGB patches
    deeper = grids.filter_grid_png(np.random.default_rng(2).normal(size=(3, 3, 5, 4)))
    assert deeper.shape == (4 * 15 + 3 * 2, 5 * 15 + 4 * 2)  # one row per filter, one column per input
    assert [p.name for p in tmp_path.iterdir()] == ["maps.png"]
