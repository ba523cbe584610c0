"""Synthetic images that look enough like anatomy to exercise real codecs and renderers.

Flat or random images would flatter or punish compression and windowing
unrealistically, so each image is built from smooth-edged ellipses
(body, lungs, heart, spine, skull, brain...) plus seeded noise, with values
in the ranges real scanners produce. Everything is vectorised numpy and
depends only on its arguments: the same seed gives the same pixels.
"""

from functools import cache

import numpy as np

CT_SIZE = 512
MR_SIZE = 256
XA_SIZE = 512

CT_OUTSIDE_FIELD_OF_VIEW = -2048
"""Stored value outside the reconstruction circle, as many CT scanners write it."""


class _Canvas:
    """An image in coordinates [-1, 1] (y pointing down, posterior) on which ellipses are painted."""

    def __init__(self, size: int, background: float):
        self.size = size
        self.axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        self.x, self.y = np.meshgrid(self.axis, self.axis, indexing="xy")
        self.image = np.full((size, size), background, dtype=np.float32)

    def _span(self, centre: float, half_width: float) -> slice:
        first = np.searchsorted(self.axis, centre - half_width)
        return slice(int(first), int(np.searchsorted(self.axis, centre + half_width, side="right")))

    def ellipse(
        self,
        centre: tuple[float, float],
        axes: tuple[float, float],
        value: "np.ndarray | float",
        edge: float = 0.006,
    ) -> None:
        """Blend ``value`` inside an ellipse whose edge is a few pixels wide instead of a hard step.

        Only the ellipse's bounding box (plus its soft edge) is computed.
        """
        margin = 12 * edge
        rows = self._span(centre[1], axes[1] * (1 + margin))
        columns = self._span(centre[0], axes[0] * (1 + margin))
        x, y = self.x[rows, columns], self.y[rows, columns]
        radius = np.sqrt(((x - centre[0]) / axes[0]) ** 2 + ((y - centre[1]) / axes[1]) ** 2)
        inside = 1.0 / (1.0 + np.exp(np.clip((radius - 1.0) / edge, -60, 60)))
        if isinstance(value, np.ndarray):
            value = value[rows, columns]
        region = self.image[rows, columns]
        region += inside * (value - region)

    def texture(self, rng: np.random.Generator, waves: int = 6) -> np.ndarray:
        """Smooth low-frequency variation in [-1, 1] (a sum of random plane waves)."""
        field = np.zeros_like(self.x)
        for _ in range(waves):
            angle, phase = rng.uniform(0, 2 * np.pi, 2)
            frequency = rng.uniform(4, 14)
            field += np.sin(frequency * (self.x * np.cos(angle) + self.y * np.sin(angle)) + phase)
        return field / waves


def ct_slice(position: float, rng: np.random.Generator) -> np.ndarray:
    """A 512×512 chest CT slice in Hounsfield units, signed 16-bit.

    ``position`` in [0, 1] runs from the lung apices to the diaphragm: lungs
    and heart change size along it, so neighbouring slices differ smoothly.
    """
    return ct_scan(ct_anatomy(position, rng), rng)


def ct_anatomy(position: float, rng: np.random.Generator) -> np.ndarray:
    """The noiseless anatomy of :func:`ct_slice` (float32 HU), which thin neighbouring slices may share."""
    canvas = _Canvas(CT_SIZE, background=-1000.0)
    body_axes = (0.82 - 0.05 * (position - 0.5) ** 2, 0.58)
    canvas.ellipse((0, 0.05), body_axes, -100.0)  # subcutaneous fat
    canvas.ellipse((0, 0.05), (body_axes[0] - 0.05, body_axes[1] - 0.05), 35.0 + 8 * canvas.texture(rng))
    lung_height = 0.25 + 0.2 * np.sin(np.pi * min(max(position, 0.05), 0.95))
    lung_texture = -840.0 + 40 * canvas.texture(rng, waves=10)
    for side in (-1, 1):
        canvas.ellipse((side * 0.37, -0.02), (0.25, lung_height), lung_texture)
    heart = 0.05 + 0.17 * np.sin(np.pi * position)
    canvas.ellipse((0.1, 0.12), (heart, heart * 0.9), 48.0)
    canvas.ellipse((-0.06, 0.32), (0.055, 0.055), 180.0)  # contrast-filled aorta
    canvas.ellipse((0, 0.47), (0.1, 0.085), 900.0)  # vertebral cortex
    canvas.ellipse((0, 0.47), (0.08, 0.065), 280.0)  # cancellous bone
    canvas.ellipse((0, 0.6), (0.035, 0.03), 15.0)  # spinal canal
    for angle in np.linspace(0, 2 * np.pi, 18, endpoint=False) + 0.1 * position:
        if abs(np.sin(angle)) < 0.97:  # no rib where the sternum and the spine are
            centre = (0.74 * body_axes[0] / 0.82 * np.cos(angle), 0.05 + 0.5 * np.sin(angle))
            canvas.ellipse(centre, (0.025, 0.018), 750.0)  # ribs
    couch = (canvas.y > 0.72) & (canvas.y < 0.76) & (np.abs(canvas.x) < 0.9)
    canvas.image[couch] = 250.0
    return canvas.image


@cache
def _outside_field_of_view(size: int) -> np.ndarray:
    canvas = _Canvas(size, background=0.0)
    return canvas.x**2 + canvas.y**2 > 1.0


def ct_scan(anatomy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``anatomy`` as stored: with noise, signed 16-bit, blank outside the reconstruction circle."""
    hu = anatomy + rng.normal(0, 12, anatomy.shape).astype(np.float32)
    pixels = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    pixels[_outside_field_of_view(anatomy.shape[0])] = CT_OUTSIDE_FIELD_OF_VIEW
    return pixels


def mr_slice(position: float, rng: np.random.Generator) -> np.ndarray:
    """A 256×256 T1-weighted head MR slice, unsigned 16-bit holding 12 bits."""
    canvas = _Canvas(MR_SIZE, background=0.0)
    head = 0.78 * np.sqrt(max(1 - (2 * position - 1) ** 2 * 0.6, 0.2))
    canvas.ellipse((0, 0), (head * 0.82, head), 1700.0, edge=0.015)  # scalp fat
    canvas.ellipse((0, 0), (head * 0.78, head * 0.95), 150.0, edge=0.015)  # skull
    canvas.ellipse((0, 0), (head * 0.72, head * 0.89), 700.0, edge=0.015)  # grey matter
    white_matter = 950.0 + 40 * canvas.texture(rng)
    canvas.ellipse((0, 0.02), (head * 0.6, head * 0.76), white_matter, edge=0.015)
    ventricle = 0.08 * np.sin(np.pi * position)
    for side in (-1, 1):
        axes = (ventricle * 0.6 + 0.01, ventricle * 2 + 0.01)
        canvas.ellipse((side * 0.07, -0.05), axes, 250.0, edge=0.015)  # lateral ventricles

    noise = rng.normal(0, 25, (2, MR_SIZE, MR_SIZE)).astype(np.float32)
    magnitude = np.sqrt((canvas.image + noise[0]) ** 2 + noise[1] ** 2)  # Rician, as magnitude images are
    return np.clip(np.rint(magnitude), 0, 4095).astype(np.uint16)


def xa_frames(frames: int, rng: np.random.Generator) -> np.ndarray:
    """A run of 512×512 8-bit angiography frames: vessels darken as contrast flows in."""
    canvas = _Canvas(XA_SIZE, background=0.0)
    x, y = canvas.x, canvas.y
    background = 190 - 50 * (x * x + y * y)  # vignetting of the image intensifier
    vessels = np.zeros_like(x)
    for _ in range(6):
        a, b, c, phase = rng.uniform(-1, 1, 4)
        path = 0.5 * a * np.sin(3 * y + phase) + 0.2 * b * y + 0.3 * c
        width = rng.uniform(0.008, 0.025)
        vessels = np.maximum(vessels, np.exp(-(((x - path) / width) ** 2)))
    run = np.empty((frames, XA_SIZE, XA_SIZE), dtype=np.uint8)
    for frame in range(frames):
        contrast = np.sin(np.pi * (frame + 1) / (frames + 1))
        image = background - 110 * contrast * vessels + rng.normal(0, 4, x.shape)
        run[frame] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return run


def small_image(rng: np.random.Generator, size: int = 16) -> np.ndarray:
    """A tiny unsigned 16-bit image for the scale test, where only the index matters."""
    return rng.integers(0, 4096, (size, size), dtype=np.uint16)
