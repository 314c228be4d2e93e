"""ShapeNetRender: ShapeNet point clouds paired with their 2D renderings, for cross-modal pretraining.

Layout (docs/protocol.md section 1; data/README.md), under one data root::

    ShapeNet/<synset>/<model_id>.ply                              vertex x, y, z (binary or ascii PLY)
    ShapeNetRendering/<synset>/<model_id>/rendering/NN.png        RGBA views (137 x 137 in the release)

There is no index file: the sample list is the sorted glob of the PLYs, each joined with its PNG views.
Objects without any PNG, and clouds whose PLY header declares fewer than MIN_POINTS vertices, are skipped;
they are listed in ``skipped`` and reported in one warning line at construction. Reading the header costs one
small read per object, like the listing of its rendering folder; the coordinates are not read at scan time
(43k files), so a cloud whose points all coincide is found when it is loaded: a DataError naming the file.

Speed: an item is one PLY read, one PNG decode, two point augmentations and the image pipeline. The image
work is done at the stored resolution (composite, colour jitter, flip, grayscale) and upsampled once at the
end together with the grayscale channel; everything stays in torch tensors (no PIL) and the point work is
vectorised numpy. All randomness is drawn from the item's numpy Generator, so items do not depend on the
number of DataLoader workers or on torch's global RNG.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision.io as tio
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset

from utils.errors import DataError

from .formats.ply import read_ply
from .h5 import checked_index, oneline, resolve_root
from .transforms import NormalizeUnitSphere, pretrain_augmentation

log = logging.getLogger(__name__)

# Fewer points than this span no surface: nothing for two augmented views or a kNN graph to work with.
MIN_POINTS = 3
# Squared norms of larger coordinates overflow float32 (max ~3.4e38) when a cloud is normalised.
MAX_COORDINATE = 1e18

# The release's views are 137 x 137; a PNG of more pixels is refused before it is decoded (a 577 kB PNG of
# 12000 x 12000 decodes to 576 MB and takes minutes per step). 4096 x 4096 is far above any rendering in use.
MAX_IMAGE_PIXELS = 4096 * 4096

PAIRED_VIEWS = ("own", "other_fixed", "other_random")  # whose views an object is shown with (ShapeNetRender)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The grayscale copy (ITU-R 601 luma, as rgb_to_grayscale) is normalised with the same luma weighting of the
# ImageNet statistics, so it has roughly zero mean and unit variance like the colour channels.
_LUMA = (0.299, 0.587, 0.114)
GRAY_MEAN = sum(w * m for w, m in zip(_LUMA, IMAGENET_MEAN))
GRAY_STD = sum(w * s for w, s in zip(_LUMA, IMAGENET_STD))


def read_ply_points(path: Path | str) -> np.ndarray:
    """xyz of a PLY's vertex element as (n, 3) float32 (faces, if any, are not read); any failure is a one-line
    DataError naming the file (datasets/formats/ply.py reads the file)."""
    path = Path(path)
    return _check_cloud(path, read_ply(path, faces=False).vertices.astype(np.float32))


def _check_cloud(path: Path, points: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        raise DataError(f"{path}: PLY has no vertices")
    if not np.isfinite(points).all():
        raise DataError(f"{path}: PLY has NaN/Inf coordinates")
    largest = float(np.abs(points).max())
    if largest > MAX_COORDINATE:
        raise DataError(f"{path}: PLY coordinates up to {largest:.3g} are too large to normalise "
                        f"(|x| <= {MAX_COORDINATE:g} expected)")
    if len(points) > 1 and not (points != points[0]).any():
        raise DataError(f"{path}: all {len(points)} points of the cloud coincide (a degenerate cloud); "
                        "remove the object or fix its PLY")
    return points


def ply_vertex_count(path: Path | str) -> int | None:
    """The vertex count a PLY header declares, from its first 4 KiB; None when it cannot be told there."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(4096)
    except OSError:
        return None
    end = head.find(b"end_header")
    if not head.startswith(b"ply") or end < 0:
        return None
    for line in head[:end].split(b"\n"):
        words = line.split()
        if len(words) == 3 and words[0] == b"element" and words[1] == b"vertex" and words[2].isdigit():
            return int(words[2])
    return None


def png_size(data: np.ndarray) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which the format puts first; (0, 0) when `data` is no PNG (the
    decoder then says what is wrong)."""
    header = data[:24].tobytes()
    if len(header) < 24 or header[:8] != b"\x89PNG\r\n\x1a\n" or header[12:16] != b"IHDR":
        return 0, 0
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def read_png_rgba(path: Path | str) -> torch.Tensor:
    """A PNG decoded to (4, H, W) uint8 RGBA (RGB / gray inputs get an opaque alpha)."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({oneline(error)})") from error
    width, height = png_size(data)
    if width * height > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: PNG of {width} x {height} pixels, more than the limit of {MAX_IMAGE_PIXELS} "
                        "(4096 x 4096) for a rendered view")
    try:
        image = tio.decode_png(torch.from_numpy(data), mode=tio.ImageReadMode.RGB_ALPHA)
    except Exception as error:  # torchvision raises RuntimeError for corrupt / non-PNG bytes
        raise DataError(f"{path}: cannot decode PNG ({oneline(error)})") from error
    if image.ndim != 3 or image.shape[0] != 4 or image.shape[1] == 0 or image.shape[2] == 0:
        raise DataError(f"{path}: decoded PNG has unexpected shape {tuple(image.shape)}")
    return image


@contextlib.contextmanager
def _one_torch_thread():
    """Run torch ops on one intra-op thread. DataLoader workers already do; in the main process
    (num_workers=0) torch would split elementwise kernels across threads, and the chunk boundaries move
    elements between vectorised and scalar code paths, which can change a result in the last bit. With one
    thread an item is bitwise identical whatever the number of workers. (Toggling costs well under 1 us.)"""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ShapeNetRender(Dataset):
    """Paired point clouds and rendered views for contrastive pretraining.

    Item keys:
      ``points1``, ``points2``: (num_points, 3) float32, two independent augmentations
        (``point_transform``, default ``transforms.pretrain_augmentation()``) of the same cloud, which is
        resampled to ``num_points`` (without replacement when the PLY has enough points, with replacement
        otherwise) and normalised to the unit sphere;
      ``image``: (3, S, S) float32, one random view: RGBA composited on ``background``, colour jitter
        (brightness, contrast, saturation, hue = ``color_jitter``, applied in random order as ColorJitter
        does), horizontal flip with probability ``flip_p``, resize to ``image_size``, ImageNet normalisation;
      ``gray``: (1, S, S) float32 (only with ``grayscale=True``), the luma of the same augmented view,
        normalised with the luma-weighted ImageNet statistics (``GRAY_MEAN``, ``GRAY_STD``).

    Item ``i`` draws everything from ``numpy.random.default_rng((seed, epoch, i))``; call ``set_epoch``.
    ``synsets`` restricts the glob to some synset folders. ``paired_views`` says whose views an object is shown
    with (``PAIRED_VIEWS``): its own; in the controls that take the images' content away from the points, those of
    one other object (a derangement drawn from ``seed``, the same every epoch, so an image still names its object
    consistently), or those of a random other object drawn anew for every item and epoch (an image names nothing).
    """

    def __init__(self, root, num_points: int = 2048, image_size: int = 224, grayscale: bool = False,
                 seed: int = 0, background=(255, 255, 255), point_transform=None,
                 color_jitter=(0.4, 0.4, 0.4, 0.0), flip_p: float = 0.5, synsets=None,
                 paired_views: str = "own"):
        self.root = resolve_root(root)
        self.num_points = int(num_points)
        if self.num_points <= 0:
            raise ValueError(f"num_points must be positive, got {num_points}")
        self.image_size = (int(image_size), int(image_size)) if np.isscalar(image_size) else \
            tuple(int(s) for s in image_size)
        self.grayscale = bool(grayscale)
        self.seed = int(seed)
        self.epoch = 0
        if len(background) != 3:
            raise ValueError(f"background must be an (r, g, b) triple in 0..255, got {background!r}")
        self.background = tuple(int(c) for c in background)
        self.point_transform = pretrain_augmentation() if point_transform is None else point_transform
        self.color_jitter = tuple(float(c) for c in color_jitter)
        if len(self.color_jitter) != 4:
            raise ValueError("color_jitter must be (brightness, contrast, saturation, hue)")
        self.flip_p = float(flip_p)
        self._normalize = NormalizeUnitSphere()
        self._bg = torch.tensor(self.background, dtype=torch.float32).div_(255.0).view(3, 1, 1)
        mean = list(IMAGENET_MEAN) + ([GRAY_MEAN] if self.grayscale else [])
        std = list(IMAGENET_STD) + ([GRAY_STD] if self.grayscale else [])
        self._mean_list, self._std_list = mean, std
        self._scan(synsets)
        if paired_views not in PAIRED_VIEWS:
            raise ValueError(f"paired_views must be one of {PAIRED_VIEWS}, got {paired_views!r}")
        self.paired_views = paired_views
        self.view_source = np.arange(len(self.objects))  # whose views object i is paired with
        if paired_views != "own" and len(self.objects) < 2:
            raise DataError(f"{self.root}: paired_views={paired_views} needs at least 2 objects, "
                            f"found {len(self.objects)}")
        if paired_views == "other_fixed":
            order = np.random.default_rng((self.seed, 0x6D69)).permutation(len(self.objects))
            self.view_source[order] = np.roll(order, -1)  # order[k] gets the views of order[k + 1]: no fixed point

    # ----------------------------------------------------------------------------------------- sample list
    def _scan(self, synsets) -> None:
        cloud_dir = self.root / "ShapeNet"
        render_dir = self.root / "ShapeNetRendering"
        for folder in (cloud_dir, render_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: folder not found")
        wanted = None if synsets is None else {str(s) for s in synsets}
        objects: list[tuple[str, str]] = []
        views: list[tuple[str, ...]] = []
        skipped: list[str] = []  # without rendered views
        tiny: list[str] = []  # fewer than MIN_POINTS vertices
        try:
            synset_names = sorted(e.name for e in os.scandir(cloud_dir) if e.is_dir())
        except OSError as error:
            raise DataError(f"{cloud_dir}: cannot list ({oneline(error)})") from error
        for synset in synset_names:
            if wanted is not None and synset not in wanted:
                continue
            try:
                ids = sorted(e.name[:-4] for e in os.scandir(cloud_dir / synset)
                             if e.name.endswith(".ply") and e.is_file())
            except OSError as error:
                raise DataError(f"{cloud_dir / synset}: cannot list ({oneline(error)})") from error
            for model_id in ids:
                try:
                    names = sorted(sys.intern(n) for n in os.listdir(render_dir / synset / model_id / "rendering")
                                   if n.lower().endswith(".png"))
                except (FileNotFoundError, NotADirectoryError):
                    names = []
                except OSError as error:
                    raise DataError(f"{render_dir / synset / model_id / 'rendering'}: cannot list "
                                    f"({oneline(error)})") from error
                if not names:
                    skipped.append(f"{synset}/{model_id}")
                    continue
                count = ply_vertex_count(cloud_dir / synset / f"{model_id}.ply")
                if count is not None and count < MIN_POINTS:
                    tiny.append(f"{synset}/{model_id}")
                    continue
                objects.append((sys.intern(synset), model_id))
                views.append(tuple(names))
        if wanted is not None and not wanted & set(synset_names):
            raise DataError(f"{cloud_dir}: none of the synsets {sorted(wanted)} present")
        reasons = ([f"{len(skipped)} without rendered PNG views under {render_dir} (e.g. {skipped[0]})"]
                   if skipped else []) + \
                  ([f"{len(tiny)} with fewer than {MIN_POINTS} points (e.g. {tiny[0]})"] if tiny else [])
        if not objects:
            raise DataError(f"{cloud_dir}: no usable .ply object" + (f" ({'; '.join(reasons)})" if reasons else
                                                                    f" with rendered PNG views under {render_dir}"))
        self.objects = objects
        self.views = views
        self.skipped = skipped + tiny
        self.num_skipped = len(self.skipped)
        if reasons:
            log.warning("ShapeNetRender: skipped %d of %d objects: %s", self.num_skipped,
                        self.num_skipped + len(objects), "; ".join(reasons))

    def __len__(self) -> int:
        return len(self.objects)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def ply_path(self, index: int) -> Path:
        synset, model_id = self.objects[index]
        return self.root / "ShapeNet" / synset / f"{model_id}.ply"

    def png_path(self, index: int, view: int) -> Path:
        """The `view`-th PNG paired with object `index` (another object's under paired_views=other_fixed)."""
        return self._view_path(int(self.view_source[index]), view)

    def _view_path(self, source: int, view: int) -> Path:
        synset, model_id = self.objects[source]
        return self.root / "ShapeNetRendering" / synset / model_id / "rendering" / self.views[source][view]

    # ------------------------------------------------------------------------------------------- points
    def _points(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        cloud = read_ply_points(self.ply_path(index))
        n = len(cloud)
        choice = rng.choice(n, self.num_points, replace=n < self.num_points)
        cloud = self._normalize(np.take(cloud, choice, axis=0))
        return self.point_transform(cloud, rng), self.point_transform(cloud, rng)

    # -------------------------------------------------------------------------------------------- image
    def _image(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        source = int(self.view_source[index])
        if self.paired_views == "other_random":  # any object but this one
            source = (index + 1 + int(rng.integers(len(self.objects) - 1))) % len(self.objects)
        view = int(rng.integers(len(self.views[source])))
        rgba = read_png_rgba(self._view_path(source, view))
        # decode_png returns a channels-last view; make it planar once so every later op runs contiguous
        scale = 1.0 / (65535.0 if rgba.dtype == torch.uint16 else 255.0)
        rgba = rgba.to(torch.float32, memory_format=torch.contiguous_format).mul_(scale)
        # composite on the background: bg + alpha * (rgb - bg)
        height, width = rgba.shape[-2:]
        image = torch.lerp(self._bg.expand(3, height, width), rgba[:3], rgba[3:4].expand(3, height, width))

        brightness, contrast, saturation, hue = self.color_jitter
        order = rng.permutation(4)
        factors = (rng.uniform(max(0.0, 1 - brightness), 1 + brightness),
                   rng.uniform(max(0.0, 1 - contrast), 1 + contrast),
                   rng.uniform(max(0.0, 1 - saturation), 1 + saturation),
                   rng.uniform(-hue, hue))
        for op in order:
            if op == 0 and brightness > 0:
                image = F.adjust_brightness(image, factors[0])
            elif op == 1 and contrast > 0:
                image = F.adjust_contrast(image, factors[1])
            elif op == 2 and saturation > 0:
                image = F.adjust_saturation(image, factors[2])
            elif op == 3 and hue > 0:
                image = F.adjust_hue(image, factors[3])
        if rng.random() < self.flip_p:
            image = image.flip(-1)
        if self.grayscale:
            image = torch.cat([image, F.rgb_to_grayscale(image)], dim=0)
        # Normalise before resizing: per-channel affine maps commute with (antialiased) bilinear resizing,
        # whose weights sum to one, and the stored 137 x 137 view has 2.7x fewer pixels than 224 x 224.
        image = F.normalize(image, self._mean_list, self._std_list)
        if tuple(image.shape[-2:]) != self.image_size:
            # antialiasing only matters (and only costs) when shrinking
            shrink = image.shape[-2] > self.image_size[0] or image.shape[-1] > self.image_size[1]
            # resized as a batch of one-channel images: torch's CPU bilinear kernel is about 3x slower on a
            # 3-channel image than on three 1-channel ones (measured with torch 2.13), and no slower with 4
            image = F.resize(image.unsqueeze(1), list(self.image_size), antialias=shrink).squeeze(1)
        return image

    def __getitem__(self, index: int) -> dict:
        index = checked_index(index, len(self))
        rng = np.random.default_rng((self.seed, self.epoch, index))
        points1, points2 = self._points(index, rng)
        with _one_torch_thread():
            image = self._image(index, rng)
        item = {"points1": torch.from_numpy(points1), "points2": torch.from_numpy(points2),
                "image": image[:3]}
        if self.grayscale:
            item["gray"] = image[3:]
        return item
