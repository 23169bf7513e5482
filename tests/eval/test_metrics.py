"""Novel-view metrics: PSNR and silhouette IoU."""

import pytest
import torch

from microdreamer_core.eval.metrics import mask_iou, psnr


def test_metrics():
    a = torch.zeros(2, 4, 4, 3)
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)
    m = torch.zeros(1, 4, 4)
    m2 = m.clone()
    m[0, :2] = 1
    m2[0, :1] = 1
    assert mask_iou(m2, m) == 0.5 and mask_iou(torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)) == 1.0
