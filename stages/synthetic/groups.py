"""SynthBirds' groups: its classes (landbird, waterbird), places (land, water) and scenes, the
scenes with no class correlation (OTHER_SCENES), and the draw of (class, place) pairs.

Shared by SynthBirds' data set (stages.synthetic.world), its pre-training set
(stages.synthetic.captions) and the teacher's zero-shot check (stages.synthetic.teacher).
"""

from __future__ import annotations

import numpy as np

from ..datasets.base import group_parts
from .scenes import SCENES as WORLD_SCENES
from .species import SPECIES


CLASSNAMES = ("landbird", "waterbird")
PLACES = ("land", "water")
N_GROUPS = len(CLASSNAMES) * len(PLACES)
# SynthBirds' scenes (name -> place), in the order its generator draws from: its land and water
# scenes, and the two that are neither (seen only in pre-training)
SCENES = {s: WORLD_SCENES[s] for s in ("forest", "bamboo", "meadow", "desert", "ocean", "lake",
                                       "river", "marsh", "snow", "city")}
# the pre-training set's scenes that carry no class correlation: every scene of the world but
# SynthBirds' land and water ones
OTHER_SCENES = [s for s in WORLD_SCENES if SCENES.get(s) is None]


def scenes_of(place):
    """SynthBirds' scenes of a place (0 land, 1 water)."""
    return [s for s, p in SCENES.items() if p == place]


def species_of(y):
    """The species of a class (0 landbird, 1 waterbird)."""
    return [s for s in SPECIES if s.y == y]


def sample_groups(n: int, correlation: float | None, rng: np.random.Generator):
    """(y, place) pairs: `correlation` = P(place == y) with balanced classes; None = balanced groups."""
    if correlation is None:  # val/test: exactly balanced over the four groups
        groups = np.arange(n) % N_GROUPS
        rng.shuffle(groups)
        return group_parts(groups, len(PLACES))
    y = rng.integers(0, 2, n)
    agree = rng.uniform(0, 1, n) < correlation
    return y, np.where(agree, y, 1 - y)
