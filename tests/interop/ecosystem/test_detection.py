"""crunet backbones under torchvision's FPN, in Faster R-CNN and RetinaNet: a few training steps on a synthetic batch
lower the loss. Runs in .venv-timm (CI), where torchvision imports; skipped elsewhere."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("torchvision")

from torchvision.models.detection import FasterRCNN, RetinaNet  # noqa: E402

import crunet  # noqa: E402
from crunet.interop.detection import backbone, default_out_indices  # noqa: E402

SIZE = 96


def _batch(n: int = 2):
    """Bright rectangles on noise; their boxes, labelled 1 (wide) or 2 (tall)."""
    g = torch.Generator().manual_seed(0)
    images, targets = [], []
    for i in range(n):
        img = torch.rand(3, SIZE, SIZE, generator=g) * 0.2
        boxes, labels = [], []
        for x0, y0, w, h in ((8 + 8 * i, 10, 40, 20), (50, 40 + 4 * i, 18, 44)):
            img[:, y0:y0 + h, x0:x0 + w] = 0.9
            boxes.append([x0, y0, x0 + w, y0 + h])
            labels.append(1 if w > h else 2)
        images.append(img)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)})
    return images, targets


def _train(model, steps: int, lr: float) -> list[float]:
    images, targets = _batch()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    model.train()
    losses = []
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_faster_rcnn_on_a_dsfb_backbone_learns_a_batch():
    fpn = backbone("dsfb_resnet34_s48u1_double")
    assert fpn.out_channels == 256 and [f["reduction"] for f in fpn.feature_info] == [4, 8, 16, 32]
    model = FasterRCNN(fpn, num_classes=3, min_size=SIZE, max_size=SIZE)
    losses = _train(model, steps=8, lr=0.01)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.85 * losses[0] and sum(losses[-3:]) < sum(losses[:3]), losses
    model.eval()
    with torch.no_grad():
        out = model(_batch(1)[0])
    assert set(out[0]) == {"boxes", "labels", "scores"}


def test_retinanet_on_a_cru_backbone_learns_a_batch():
    fpn = backbone("crunet_small", extra_blocks="p6p7")
    body = fpn.body
    shared = [n for n, _ in body.named_parameters() if ".factors." in n]
    assert shared, "the CRU stage's shared factors should be in the backbone"
    model = RetinaNet(fpn, num_classes=3, min_size=SIZE, max_size=SIZE)
    with torch.no_grad():
        maps = fpn(torch.zeros(1, 3, SIZE, SIZE))
    assert len(maps) == 5 and all(m.shape[1] == 256 for m in maps.values())  # 3 stages + P6 + P7
    losses = _train(model, steps=8, lr=0.01)
    assert losses[-1] < 0.85 * losses[0] and sum(losses[-3:]) < sum(losses[:3]), losses


def test_feature_maps_follow_the_stages_and_sharing_is_kept():
    model = crunet.create_model("crunet_small", num_classes=0).eval()
    fpn = backbone("crunet_small", extra_blocks="none")
    fpn.body.load_state_dict({k.replace("stages.", "stage"): v for k, v in model.state_dict().items()
                              if k.startswith(("stem.", "stages."))})
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        want = model.forward_intermediates(x, intermediates_only=True)
        got = fpn.eval().body(x)
    for g, w in zip(got.values(), want, strict=True):
        torch.testing.assert_close(g, w)
    units = fpn.body.stage2.units
    assert all(unit.factors is fpn.body.stage2.factors[0] for unit in units[:3])  # still one shared module


def test_trainable_stages_and_bad_arguments():
    fpn = backbone("crunet_small", trainable_stages=1, extra_blocks="none")
    frozen = {n.split(".")[0] for n, p in fpn.body.named_parameters() if not p.requires_grad}
    assert frozen == {"stem", "stage0", "stage1"}
    with pytest.raises(ValueError, match="extra_blocks must be one of"):
        backbone("crunet_small", extra_blocks="p6")
    with pytest.raises(ValueError, match="has stages 0..2"):
        backbone("crunet_small", out_indices=[1, 5])
    with pytest.raises(ValueError, match="trainable_stages=9"):
        backbone("crunet_small", trainable_stages=9)


def test_default_out_indices_take_the_last_stage_of_each_stride():
    info = [{"reduction": r} for r in (2, 4, 8, 16, 16, 32, 32)]  # mobilenetv2
    assert default_out_indices(info, 4) == [1, 2, 4, 6]
    assert default_out_indices(info, 3) == [2, 4, 6]
    assert default_out_indices([{"reduction": r} for r in (4, 8, 16, 32)], 4) == [0, 1, 2, 3]
