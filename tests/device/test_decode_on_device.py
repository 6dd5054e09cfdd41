"""``--decode device`` on ``--device``: the batch is decoded (nvjpeg on CUDA), cropped, flipped and normalized there,
with the same crops and flips as on the CPU, and the same batch again bit for bit.

nvjpeg and libjpeg-turbo differ in their inverse DCT and chroma upsampling, so CUDA's pixels are compared with the
CPU's within a budget (mean difference under 1.5 levels, none over 24), and the measured differences are printed
for the record (``pytest -rA`` shows them).
"""

import pytest
import torch

from crunet.data import DataSpec, eval_shard, open_split
from tests.helpers import jpeg_folders

# torchvision 0.29 deprecates its image decoders (for TorchCodec) with a warning at each call
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")

STD = 0.25
LEVEL = 1 / (255 * STD)


def images(root, split: str, device, crops: int = 1) -> torch.Tensor:
    spec = DataSpec(in_chans=3, size=24, mean=(0.5,) * 3, std=(STD,) * 3, augment="rrc", crops=crops, workers=0,
                    decode="device")
    loader = open_split(root, split, spec).to(device)
    return torch.cat([x for x, _, _ in loader.iterate(eval_shard(len(loader), 4), epoch=1)])


@pytest.mark.parametrize("split, crops", [("train", 1), ("val", 1), ("val", 10)])
def test_device_decode_matches_the_cpu_and_repeats_exactly(device, tmp_path, split, crops):
    pytest.importorskip("torchvision.io")
    root = jpeg_folders(tmp_path / "jpegs", per_class=5)
    on_device = images(root, split, device, crops)
    assert on_device.device.type == device.type and on_device.dtype == torch.float32
    assert torch.equal(on_device, images(root, split, device, crops))
    diff = (on_device.cpu() - images(root, split, "cpu", crops)).abs() / LEVEL
    print(f"{split} {crops} crop(s) on {device}: levels from the CPU: mean {diff.mean():.3f}, max {diff.max():.2f}")
    assert diff.mean() < 1.5 and diff.max() <= 24


def test_the_decode_does_not_overwrite_memory_queued_kernels_still_read(device, tmp_path):
    """torchvision's CUDA ``decode_jpeg`` can write its outputs into blocks freed while kernels queued on the caller's
    stream still read them (pytorch/vision#9606: nvJPEG's hardware decoder, H100s). Freed blocks of the decoded
    images' sizes, each with a sum queued behind a GPU stall: the loader's decode must leave every sum right. The
    bare ``decode_jpeg`` is timed the same way and its count printed (0 where the GPU does not show the bug)."""
    if device.type != "cuda":
        pytest.skip("CUDA streams only")
    tv = pytest.importorskip("torchvision.io")
    root = jpeg_folders(tmp_path / "jpegs", per_class=5)
    loader = open_split(root, "train", DataSpec(in_chans=3, size=24, mean=(0.5,) * 3, std=(STD,) * 3,
                                                workers=0, decode="device")).to(device)
    jpegs = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in sorted(root.glob("train/*/*"))]
    sizes = [img.numel() for img in tv.decode_jpeg(jpegs, mode=tv.ImageReadMode.RGB)]

    def corrupted(decode, rounds: int = 20) -> int:
        bad = 0
        for _ in range(rounds):
            victims = [torch.ones(n, dtype=torch.uint8, device=device) for n in sizes]
            torch.cuda.synchronize(device)
            torch.cuda._sleep(200_000_000)  # about 0.1 s of GPU time before the sums run
            sums = [v.sum() for v in victims]
            del victims
            decode(jpegs)
            torch.cuda.synchronize(device)
            bad += any(int(s) != n for s, n in zip(sums, sizes, strict=True))
        return bad

    bare = corrupted(lambda j: tv.decode_jpeg(j, mode=tv.ImageReadMode.RGB, device=device))
    ours = corrupted(loader.decode)
    print(f"rounds with a wrong sum on {torch.cuda.get_device_name(device)}: bare decode_jpeg {bare}/20, "
          f"the loader's decode {ours}/20")
    assert ours == 0
