import numpy as np
import pytest
from PIL import Image

from tests.helpers import write_idx


@pytest.fixture
def image_saver():
    return save_image


@pytest.fixture
def idx_folder(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 64), ("t10k", 32)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def save_image(path, mode: str = "RGB", size=(40, 30), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    if mode == "P":
        img = img.convert("P", palette=Image.ADAPTIVE)
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, "TIFF" if mode == "CMYK" else None)
