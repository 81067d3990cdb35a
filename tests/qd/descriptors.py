"""A user-defined descriptor, named in a config as ``tests.qd.descriptors:mean_position``."""

import numpy as np


def mean_position(observations: np.ndarray, info: dict) -> np.ndarray:
    return np.array([observations[:, 0].mean()])
