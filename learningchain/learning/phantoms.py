"""Synthetic CT slices: Shepp–Logan-style head phantoms with or without a lesion,
forward-projected and reconstructed by filtered back-projection (the
``ct-phantoms`` dataset of :mod:`learningchain.learning.data`). Pure: NumPy and
scikit-image, no I/O, no downloads.

Each image ``i`` of seed ``s`` is drawn from its own generator,
``numpy.random.default_rng([s, i])``, so it does not depend on how many images
are asked for (the first 100 of 1,600 are the 100 of 100). An image is:

* a head: a bright skull ellipse (intensity 1.0) around a darker brain
  (0.24 .. 0.26), with seeded semi-axes, centre and tilt (small jitter: the
  head fills about the same pixels in every image, as a flattened-pixel MLP
  needs);
* 3 .. 5 seeded interior ellipses (ventricles and other structures,
  intensity -0.06 .. +0.06 each, added);
* a lesion or none, by the label ``i % 3`` (so the three classes are balanced
  exactly): 0 none; 1 a bright lesion, 2 a dark one: a small ellipse
  (semi-axes 0.12 .. 0.18 of the half-field) at a seeded position inside the
  brain, +0.35 .. +0.5 brighter (1) or that much darker (2, clipped at 0) than
  its surroundings. Presence alone is ``y > 0``.

The phantom is forward-projected (``skimage.transform.radon``, ``angles``
views over 180 degrees), Gaussian noise of standard deviation ``noise`` times
the sinogram's largest value is added (seeded), and the slice is rebuilt with
filtered back-projection (``skimage.transform.iradon``, ramp filter): so the
images carry real reconstruction artifacts (streaks from the few views, noise
amplified by the ramp filter, blur). The result is clipped to [0, 1] (the
phantom's own range) and returned as float32.

Determinism: same arguments, same bytes in the same environment. iradon and
radon compute in float64 NumPy (interpolation, FFT): bit-for-bit equality
across machines holds only with the same NumPy and scikit-image versions (and
their FFT backend); the tests check equality within one environment.

scikit-image is imported when images are generated, not at import, so a CLI
command that builds no dataset does not pay for it.
"""
from __future__ import annotations

import numpy as np

from learningchain.core.errors import ConfigError

#: side of a slice in pixels (images are SIZE x SIZE).
SIZE = 32
#: projection angles of the sinogram (a sparse-view scan: streak artifacts).
ANGLES = 40
#: sinogram noise, as a share of the sinogram's largest value.
NOISE = 0.02


def _ellipse(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, a: float, b: float,
             phi: float) -> np.ndarray:
    """Mask of the ellipse centred at (cx, cy) with semi-axes a, b tilted by phi."""
    c, s = np.cos(phi), np.sin(phi)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


#: the labels: no lesion, a bright lesion, a dark lesion.
CLASSES = ("none", "bright", "dark")


def phantom(rng: np.random.Generator, size: int = SIZE, lesion: int = 0) -> np.ndarray:
    """One clean phantom (float64, ``size`` x ``size``, values in [0, 1]) with
    lesion ``lesion`` (an index of :data:`CLASSES`), zero outside the inscribed
    circle (as ``radon(circle=True)`` wants)."""
    grid = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    xx, yy = np.meshgrid(grid, -grid)
    img = np.zeros((size, size))
    # head: skull then brain, both inside the unit circle (a, b <= 0.85 from a centre within 0.05)
    cx, cy = rng.uniform(-0.02, 0.02, 2)
    a, b = rng.uniform(0.72, 0.76), rng.uniform(0.8, 0.84)
    phi = rng.uniform(-0.1, 0.1)
    img[_ellipse(xx, yy, cx, cy, a, b, phi)] = 1.0
    t = rng.uniform(0.09, 0.11)  # skull thickness
    brain = _ellipse(xx, yy, cx, cy, a - t, b - t, phi)
    img[brain] = rng.uniform(0.24, 0.26)
    ia, ib = a - t, b - t  # brain semi-axes: interior structures and lesions stay inside

    def inside(scale: float) -> tuple[float, float]:
        r, th = scale * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        u, v = r * ia * np.cos(th), r * ib * np.sin(th)
        c, s = np.cos(phi), np.sin(phi)
        return cx + u * c - v * s, cy + u * s + v * c

    for _ in range(int(rng.integers(3, 6))):
        ex, ey = inside(0.6)
        m = _ellipse(xx, yy, ex, ey, rng.uniform(0.08, 0.25), rng.uniform(0.05, 0.15),
                     rng.uniform(0, np.pi)) & brain
        img[m] += rng.uniform(-0.06, 0.06)
    if lesion:
        ex, ey = inside(0.65)
        m = _ellipse(xx, yy, ex, ey, rng.uniform(0.12, 0.18), rng.uniform(0.12, 0.18),
                     rng.uniform(0, np.pi)) & brain
        img[m] += (1.0 if lesion == 1 else -1.0) * rng.uniform(0.35, 0.5)
    return np.clip(img, 0.0, 1.0)


def reconstruct(img: np.ndarray, rng: np.random.Generator, angles: int = ANGLES,
                noise: float = NOISE) -> np.ndarray:
    """Radon transform of ``img`` at ``angles`` views, seeded sinogram noise,
    filtered back-projection (ramp); float64, clipped to [0, 1]."""
    from skimage.transform import iradon, radon  # lazily: only when images are made
    theta = np.linspace(0.0, 180.0, angles, endpoint=False)
    sino = radon(img, theta=theta, circle=True)
    sino = sino + rng.normal(0.0, noise * float(sino.max()), sino.shape)
    rec = iradon(sino, theta=theta, filter_name="ramp", circle=True, output_size=img.shape[0])
    return np.clip(rec, 0.0, 1.0)


def generate(n: int, seed: int = 0, size: int = SIZE, angles: int = ANGLES, noise: float = NOISE,
             clean: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``n`` reconstructed slices ``X`` (float32, ``(n, size, size)``, in [0, 1])
    and labels ``y`` (int64, ``i % 3``: 0 no lesion, 1 bright, 2 dark). ``clean=True``
    returns the phantoms before projection instead (same phantoms)."""
    for name, v, least in (("n", n, 1), ("size", size, 8), ("angles", angles, 2)):
        if isinstance(v, bool) or not isinstance(v, int) or v < least:
            raise ConfigError(f"ct-phantoms: {name} must be an integer >= {least}, got {v!r}")
    if not noise >= 0:
        raise ConfigError(f"ct-phantoms: noise must be >= 0, got {noise!r}")
    X = np.empty((n, size, size), np.float32)
    y = np.arange(n, dtype=np.int64) % len(CLASSES)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        img = phantom(rng, size, int(y[i]))
        X[i] = img if clean else reconstruct(img, rng, angles, noise)
    return X, y
