"""Point-cloud augmentations (docs/protocol.md section 4): statistics, explicit randomness, no input mutation."""

import math

import numpy as np
import pytest

from datasets.transforms import (Compose, NormalizeUnitSphere, RandomDropout, RandomJitter, RandomRotateY,
                                 RandomScale, RandomTranslate, pretrain_augmentation)


def cloud(n=2048, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, channels))
    points[:, :3] = points[:, :3] * [1.0, 2.0, 0.5] + [3.0, -1.0, 2.0]
    return points.astype(np.float32)


def test_normalize_unit_sphere():
    out = NormalizeUnitSphere()(cloud(), None)
    assert out.dtype == np.float32 and out.shape == (2048, 3)
    np.testing.assert_allclose(out.mean(axis=0), 0.0, atol=1e-5)
    assert np.linalg.norm(out, axis=1).max() == pytest.approx(1.0, abs=1e-6)


def test_rotation_about_y_keeps_y_and_norms():
    points = NormalizeUnitSphere()(cloud(), None)
    rng = np.random.default_rng(1)
    out = RandomRotateY()(points, rng)
    np.testing.assert_array_equal(out[:, 1], points[:, 1])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(points, axis=1), atol=1e-5)
    assert not np.allclose(out[:, [0, 2]], points[:, [0, 2]], atol=1e-3)
    # a fixed angle: pi/2 maps +x to -z (x' = c x + s z, z' = -s x + c z)
    quarter = RandomRotateY(math.pi / 2, math.pi / 2)(np.array([[1, 0, 0]], np.float32), rng)
    np.testing.assert_allclose(quarter, [[0, 0, -1]], atol=1e-6)


def test_rotation_angles_cover_full_circle():
    rng = np.random.default_rng(2)
    point = np.array([[1, 0, 0]], np.float32)
    angles = [math.atan2(-p[0, 2], p[0, 0]) % (2 * math.pi) for p in (RandomRotateY()(point, rng) for _ in range(400))]
    assert min(angles) < 0.2 and max(angles) > 2 * math.pi - 0.2


def test_scale_is_isotropic_and_in_range():
    points = cloud()
    rng = np.random.default_rng(3)
    factors = []
    for _ in range(300):
        out = RandomScale()(points, rng)
        ratio = out / points
        assert np.allclose(ratio, ratio[0, 0], rtol=1e-5)  # one factor for all coordinates
        factors.append(ratio[0, 0])
    assert 0.5 <= min(factors) < 0.6 and 1.9 < max(factors) <= 2.0


def test_translation_is_bounded_by_half_extent():
    points = cloud()
    extent = points.max(axis=0) - points.min(axis=0)
    rng = np.random.default_rng(4)
    shifts = np.array([(RandomTranslate()(points, rng) - points)[0] for _ in range(300)])
    assert np.all(np.abs(shifts) <= 0.5 * extent + 1e-4)
    assert np.all(np.abs(shifts).max(axis=0) > 0.4 * extent)  # per axis, scaled by that axis' extent
    out = RandomTranslate()(points, rng)
    np.testing.assert_allclose(out - out[0], points - points[0], atol=1e-5)  # a rigid shift


def test_jitter_is_small_and_clipped():
    points = np.zeros((20000, 3), np.float32)
    out = RandomJitter()(points, np.random.default_rng(5))
    assert np.abs(out).max() <= 0.05 + 1e-7
    assert out.std() == pytest.approx(0.01, rel=0.05)
    clipped = RandomJitter(sigma=1.0, clip=0.05)(points, np.random.default_rng(5))
    assert np.abs(clipped).max() == pytest.approx(0.05)


def test_dropout_replaces_with_first_point():
    points = cloud(channels=3)
    rng = np.random.default_rng(6)
    ratios = []
    for _ in range(200):
        out = RandomDropout()(points, rng)
        assert out.shape == points.shape
        changed = np.any(out != points, axis=1)
        assert np.all(out[changed] == points[0])
        ratios.append(changed.mean())
    assert max(ratios) < 0.9 and max(ratios) > 0.7 and min(ratios) < 0.1


def test_transforms_keep_extra_channels_and_do_not_mutate_input():
    points = cloud(channels=9)
    before = points.copy()
    rng = np.random.default_rng(7)
    for transform in (NormalizeUnitSphere(), RandomScale(), RandomRotateY(), RandomTranslate(), RandomJitter()):
        out = transform(points, rng)
        assert out.dtype == np.float32 and out.shape == points.shape
        np.testing.assert_array_equal(out[:, 3:], points[:, 3:])
    np.testing.assert_array_equal(points, before)


def test_compose_is_deterministic_given_the_rng():
    points = NormalizeUnitSphere()(cloud(), None)
    augment = pretrain_augmentation()
    assert isinstance(augment, Compose) and len(augment.transforms) == 5
    a = augment(points, np.random.default_rng((0, 1, 2)))
    b = augment(points, np.random.default_rng((0, 1, 2)))
    c = augment(points, np.random.default_rng((0, 1, 3)))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert a.dtype == np.float32 and a.shape == points.shape
