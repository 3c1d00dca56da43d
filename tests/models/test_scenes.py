"""Procedural scenes (models/scenes.py) that held-out sets are made of: a picture per seed, the same every time."""
import numpy as np
import pytest

from models import scenes
from models.iqa import holdout as H

# the kinds written for iqa's holdout8 (the earlier ones are drawn by models/video/fresh.py's tests)
HOLDOUT8_KINDS = [scenes.leopard, scenes.rust, scenes.turing, scenes.fireworks, scenes.bubbles, scenes.road, scenes.terminal,
                  scenes.blueprint, scenes.maze, scenes.flags, scenes.barchart, scenes.brushed]


def test_holdout8_lists_exactly_these_kinds():
    assert [H.SCENES[n][0] for n in H.SETS["holdout8"]] == [f.__name__ for f in HOLDOUT8_KINDS]


@pytest.mark.parametrize("scene", HOLDOUT8_KINDS, ids=lambda f: f.__name__)
def test_a_scene_is_a_deterministic_rgb_picture_that_its_seed_changes(scene):
    first, again, other = scene(11), scene(11), scene(12)
    assert first.dtype == np.uint8 and first.shape == (512, 512, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.std() > 10  # a picture, not a flat field
