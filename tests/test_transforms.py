import random

import numpy as np
import pytest
import torch

from effvid.data import (IMAGENET_MEAN, IMAGENET_STD, TestTransform, TrainTransform,
                         multi_scale_crop_params, normalize_clip)


def marker_clip(t=4, h=60, w=80, x=10, y=20):
    """Clip whose frame k has a bright 4x4 marker at (y, x + 2k) on a dark background."""
    clip = torch.full((t, h, w, 3), 20, dtype=torch.uint8)
    for k in range(t):
        clip[k, y:y + 4, x + 2 * k:x + 2 * k + 4] = 250
    return clip


def marker_x(frame_chw):
    """Column of the marker's centre in a normalised (3, H, W) frame."""
    m = frame_chw.mean(0)
    mask = m > (m.min() + m.max()) / 2
    return float(mask.nonzero()[:, 1].float().mean())


def test_normalize_values():
    clip = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    clip[:, :, 0, 0] = 255
    out = normalize_clip(clip)
    assert out.dtype == torch.float32
    for c in range(3):
        assert out[0, c, 1, 1].item() == pytest.approx(-IMAGENET_MEAN[c] / IMAGENET_STD[c], abs=1e-5)
        assert out[0, c, 0, 0].item() == pytest.approx((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c], abs=1e-5)


def test_multi_scale_crop_params():
    seen_sizes, seen_pos = set(), set()
    for s in range(300):
        top, left, ch, cw = multi_scale_crop_params(240, 320, 224, rng=np.random.default_rng(s))
        assert 0 <= top and top + ch <= 240 and 0 <= left and left + cw <= 320
        seen_sizes.add((ch, cw))
        seen_pos.add((top, left))
    # sides are scale * 240 snapped to 224 when within 3 px; max_distort=1 pairs only
    sides = [240, 210, 180, 158]
    allowed = {(sides[i], sides[j]) for i in range(4) for j in range(4) if abs(i - j) <= 1}
    assert seen_sizes == allowed
    assert (0, 0) in seen_pos
    p1 = multi_scale_crop_params(240, 320, 224, rng=random.Random(1))
    assert p1 == multi_scale_crop_params(240, 320, 224, rng=random.Random(1))
    g = torch.Generator().manual_seed(2)
    p2 = multi_scale_crop_params(240, 320, 224, rng=g)
    assert p2 == multi_scale_crop_params(240, 320, 224, rng=torch.Generator().manual_seed(2))


def test_train_transform_same_crop_for_all_frames():
    frame = torch.randint(0, 256, (60, 80, 3), dtype=torch.uint8)
    clip = frame.expand(5, 60, 80, 3).clone()
    tf = TrainTransform(size=32)
    for s in range(10):
        out = tf(clip, np.random.default_rng(s))
        assert out.shape == (5, 3, 32, 32) and out.dtype == torch.float32
        assert all(torch.equal(out[0], out[k]) for k in range(1, 5))  # identical frames stay identical
    a = tf(clip, np.random.default_rng(7))
    assert torch.equal(a, tf(clip, np.random.default_rng(7)))


def test_train_transform_flip_consistent_and_switchable():
    clip = marker_clip(x=34)  # inside every 60x60 crop of the 60x80 frame
    tf = TrainTransform(size=48, scales=(1,), max_distort=0)  # crop = centre-ish/corner square
    flips = 0
    for s in range(30):
        out = tf(clip, np.random.default_rng(s))
        xs = [marker_x(out[k]) for k in range(out.shape[0])]
        dx = np.diff(xs)
        # the marker moves right in every frame, or left in every frame if flipped
        assert np.all(dx > 0) or np.all(dx < 0), xs
        flips += bool(np.all(dx < 0))
    assert 5 < flips < 25
    no_flip = TrainTransform(size=48, scales=(1,), max_distort=0, flip=False)
    for s in range(30):
        out = no_flip(clip, np.random.default_rng(s))
        assert np.all(np.diff([marker_x(out[k]) for k in range(4)]) > 0)


def test_test_transform_single_centre_crop():
    clip = marker_clip(t=3, h=60, w=80, x=38, y=28)  # marker near the centre
    out = TestTransform(size=32, scale_size=40)(clip)
    assert out.shape == (3, 3, 32, 32)
    # centre crop of the 40x53 resize keeps the marker near the middle of the crop
    assert abs(marker_x(out[0]) - 16) <= 3


def test_test_transform_three_crops():
    clip = torch.zeros(2, 40, 120, 3, dtype=torch.uint8)
    clip[..., 0:40, 0] = 255     # left third red
    clip[..., 40:80, 1] = 255    # middle green
    clip[..., 80:120, 2] = 255   # right blue
    out = TestTransform(size=20, scale_size=20, num_crops=3)(clip)
    assert out.shape == (3, 2, 3, 20, 20)
    # view v is dominated by channel v (left/centre/right), same in every frame
    for v in range(3):
        assert out[v].mean(dim=(0, 2, 3)).argmax().item() == v
        assert torch.equal(out[v, 0], out[v, 1])
    tall = TestTransform(size=20, scale_size=20, num_crops=3)(clip.permute(0, 2, 1, 3).contiguous())
    assert tall.shape == (3, 2, 3, 20, 20)
    for v in range(3):  # top/middle/bottom
        assert tall[v].mean(dim=(0, 2, 3)).argmax().item() == v


def _ramps(h, w):
    """uint8 clip (1, h, w, 3): red = column, green = row (both < 256)."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([cols, rows, torch.zeros_like(cols)], -1).to(torch.uint8)[None]


def _raw(tf_size, scale_size, clip):
    """3-crop views in pixel values (no normalisation)."""
    return TestTransform(tf_size, scale_size, num_crops=3, mean=(0, 0, 0), std=(1 / 255,) * 3)(clip)


def test_three_crops_are_the_originals_full_res_sample():
    # test_models.py --test_crops=3: GroupFullResSample(size, scale_size) scales the short side to
    # scale_size, then takes size squares at left 0, 2 and 4 * ((W - size) // 4), all at
    # 2 * ((H - size) // 4) from the top. They were cut from frames scaled to size, whatever
    # --scale-size said. A 40 x 75 frame needs no resize for scale_size 40: pixel = position.
    views = _raw(32, 40, _ramps(40, 75))
    assert views.shape == (3, 1, 3, 32, 32)
    for view, left in zip(views, (0, 20, 40)):  # (75 - 32) // 4 = 10
        assert torch.equal(view[0, 0, 0], torch.arange(left, left + 32, dtype=torch.float32))
        assert torch.equal(view[0, 1, :, 0], torch.arange(4, 36, dtype=torch.float32))  # (40 - 32) // 4 = 2
    # portrait: along the long side instead (top/middle/bottom), centred across
    views = _raw(32, 40, _ramps(75, 40))
    for view, top in zip(views, (0, 20, 40)):
        assert torch.equal(view[0, 1, :, 0], torch.arange(top, top + 32, dtype=torch.float32))
        assert torch.equal(view[0, 0, 0], torch.arange(4, 36, dtype=torch.float32))
    # a frame twice as large is scaled to scale_size first: view pixel (r, c) is source pixel
    # (2 (top + r) + 0.5, 2 (left + c) + 0.5), the mean of two, inside the frame
    views = _raw(56, 64, _ramps(128, 170))  # -> 64 x 85: lefts 0, 14, 28 ((85 - 56) // 4 = 7), top 4
    for view, left in zip(views, (0, 14, 28)):
        r, c = torch.arange(2, 54), torch.arange(2, 54)
        assert (view[0, 0, 10, 2:54] - (2 * (left + c) + 0.5)).abs().max() <= 1
        assert (view[0, 1, 2:54, 10] - (2 * (4 + r) + 0.5)).abs().max() <= 1
    # --full_res: crops of the whole short side (size == scale_size)
    views = _raw(40, 40, _ramps(40, 75))
    assert [v[0, 0, 0, 0].item() for v in views] == [0, 16, 32] and views[0, 0, 1, 0, 0] == 0


def test_three_crops_default_to_the_originals_settings():
    from effvid.inference import test_view

    # a converted release checkpoint records no size: 224 crops of frames scaled to 256, as
    # test_models.py without --full_res; --size 256 --scale-size 256 is its --full_res
    assert (test_view({})["size"], test_view({})["scale_size"]) == (224, 256)
    full_res = test_view({}, size=256, scale_size=256)
    assert (full_res["size"], full_res["scale_size"]) == (256, 256)
    clip = _ramps(256, 340)
    default = TestTransform(224, 256, num_crops=3, mean=(0, 0, 0), std=(1 / 255,) * 3)(clip)
    # (340 - 224) // 4 = 29: lefts 0, 58, 116; (256 - 224) // 4 = 8: top 16
    assert [v[0, 0, 0, 0].item() for v in default] == [0, 58, 116]
    assert [v[0, 1, 0, 0].item() for v in default] == [16, 16, 16]


def test_test_transform_ten_crops():
    clip = torch.full((2, 64, 64, 3), 10, dtype=torch.uint8)
    clip[:, 0:8, 0:8] = 255  # top-left corner only
    out = TestTransform(size=32, scale_size=64, num_crops=10)(clip)
    assert out.shape == (10, 2, 3, 32, 32)
    bright = out.mean(dim=(1, 2)) > out.mean()  # (10, 32, 32) rough mask
    # view 0 = top-left crop: marker at its top-left; view 5 = its flip: marker top-right
    assert bright[0, :8, :8].all() and not bright[0, :8, -8:].any()
    assert bright[5, :8, -8:].all() and not bright[5, :8, :8].any()
    assert torch.equal(out[5], out[0].flip(-1))
    for v in (1, 2, 3, 4):  # other crops don't contain the corner
        assert not bright[v].any()


def test_test_views_sit_on_the_originals_grid():
    # GroupOverSample / GroupFullResSample: offsets are multiples of (W - S) // 4, so the far
    # crops end up to 3 px short of the edge. Pixel value = column index tells where a crop starts.
    cols = torch.arange(75, dtype=torch.uint8).view(1, 1, 75, 1).expand(1, 64, 75, 3).contiguous()
    ten = TestTransform(size=32, scale_size=64, num_crops=10, mean=(0, 0, 0), std=(1 / 255,) * 3)(cols)
    lefts = [round(ten[v, 0, 0, 0, 0].item()) for v in range(5)]
    assert lefts == [0, 40, 0, 40, 20]  # (75 - 32) // 4 = 10: 4 * 10 = 40, not 43; centre 20, not 21
    rows = cols.permute(0, 2, 1, 3).contiguous()  # value = row index, 75 high x 64 wide
    tops = [round(TestTransform(size=32, scale_size=64, num_crops=10, mean=(0, 0, 0),
                                std=(1 / 255,) * 3)(rows)[v, 0, 0, 0, 0].item()) for v in range(5)]
    assert tops == [0, 0, 40, 40, 20]
    three = TestTransform(size=32, scale_size=32, num_crops=3, mean=(0, 0, 0), std=(1 / 255,) * 3)
    wide = torch.arange(75, dtype=torch.uint8).view(1, 1, 75, 1).expand(1, 32, 75, 3).contiguous()
    assert [round(three(wide)[v, 0, 0, 0, 0].item()) for v in range(3)] == [0, 20, 40]


def test_bad_arguments():
    with pytest.raises(ValueError):
        TestTransform(num_crops=4)
    with pytest.raises(ValueError):
        TrainTransform()(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


def test_default_scale_size_rounds_down_as_the_original_tsm_everywhere():
    """The original's input_size * 256 // 224: effvid rounded to nearest (293 for 256, 37 for 32)."""
    from effvid.data.datasets import VideoClipDataset
    from effvid.data.transforms import default_scale_size
    from effvid.inference import test_view
    from effvid.stream import preprocess_frame
    from effvid.training.config import TrainConfig

    expected = {224: 256, 256: 292, 32: 36, 112: 128}
    assert {size: default_scale_size(size) for size in expected} == expected
    for size, scale in expected.items():
        assert TrainConfig(data="x", size=size).test_scale_size == scale
        assert test_view({"extra": {"size": 8}}, size=size)["scale_size"] == scale
        dataset = VideoClipDataset([], ["a"], num_segments=1, train=False, size=size)
        assert dataset.transform.scale_size == scale
    # a 36-pixel-high frame is only cropped, not resized, at size 32 (37 scaled it up)
    frame = np.tile(np.arange(36, dtype=np.uint8)[None, :, None] * 7, (36, 1, 3))
    got = preprocess_frame(frame, size=32)
    want = normalize_clip(torch.from_numpy(frame[2:34, 2:34]).permute(2, 0, 1))
    assert torch.allclose(got, want, atol=1e-5)
