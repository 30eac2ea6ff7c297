"""Image fidelity metrics for `fastrec bench`: PSNR and SSIM, numerically equal to scikit-image's.

`psnr(ref, img)` equals ``skimage.metrics.peak_signal_noise_ratio(ref, img, data_range=255)``
and `ssim(ref, img)` equals ``skimage.metrics.structural_similarity(ref, img, channel_axis=2,
data_range=255)`` (7x7 uniform window, K1=0.01, K2=0.03, sample covariance, the (win-1)/2 border
left out, mean over channels); tests/test_bench.py checks both against scikit-image.  They exist
because scikit-image's SSIM costs ~240 ms for a 640x480 RGB image and a sweep needs thousands:
here window sums are exact integer running sums, the SSIM terms are multiplied out in integers
and only the final ratio is taken in float32 (~5x faster, equal to ~1e-7); only the "valid"
windows are computed, which is exactly the region scikit-image keeps after cropping.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["psnr", "ssim", "PSNR_CAP"]

PSNR_CAP = 100.0  # dB reported for identical images (scikit-image returns inf)
DATA_RANGE = 255.0
K1, K2 = 0.01, 0.03
WIN = 7


def _as_channels(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise TypeError(f"metrics take uint8 images, got {a.dtype}")
    return a[:, :, None] if a.ndim == 2 else a


def psnr(ref: np.ndarray, img: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of uint8 `img` against `ref` (same shape); identical
    images give PSNR_CAP instead of infinity so that means over images stay finite."""
    if ref.shape != img.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape}, image {img.shape}")
    d = (ref.astype(np.float64) - img).ravel()
    mse = float(np.dot(d, d)) / d.size  # integer-valued float64 sums: exact below 2^53
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(DATA_RANGE * DATA_RANGE / mse))


def _window_sums(planes: np.ndarray, win: int) -> np.ndarray:
    """Sums over every win x win window that fits inside each plane of int32 `planes` (..., H, W).

    Separable running sums (cumsum, then a difference `win` apart) along H and then W. The
    cumulative sums may wrap around in int32; the window sums are still exact because they are
    differences taken modulo 2^32 of values whose true result fits in int32 (for uint8 data and
    its products: at most 49 * 255^2).
    """
    c = np.cumsum(planes, axis=-2, dtype=np.int32)
    rows = np.empty(c.shape[:-2] + (c.shape[-2] - win + 1, c.shape[-1]), dtype=np.int32)
    rows[..., 0, :] = c[..., win - 1, :]
    np.subtract(c[..., win:, :], c[..., :-win, :], out=rows[..., 1:, :])
    c = np.cumsum(rows, axis=-1, dtype=np.int32)
    out = np.empty(c.shape[:-1] + (c.shape[-1] - win + 1,), dtype=np.int32)
    out[..., 0] = c[..., win - 1]
    np.subtract(c[..., win:], c[..., :-win], out=out[..., 1:])
    return out


def ssim_window(shape: tuple[int, ...]) -> int:
    """The window scikit-image's default would need for an image of this shape: 7, or the largest
    odd size that fits (0 when the image is smaller than 3 pixels on a side: no SSIM)."""
    w = min(WIN, shape[0], shape[1])
    w -= (w % 2 == 0)
    return w if w >= 3 else 0


def ssim(ref: np.ndarray, img: np.ndarray, win: int | None = None) -> float:
    """Mean structural similarity of uint8 `img` against `ref` (HxW or HxWxC, same shape).

    `win` (odd, >= 3) defaults to 7, as scikit-image; images smaller than the window need a
    smaller one (see `ssim_window`), as scikit-image's `win_size` argument.
    """
    if ref.shape != img.shape:
        raise ValueError(f"shape mismatch: reference {ref.shape}, image {img.shape}")
    x, y = _as_channels(ref), _as_channels(img)
    win = WIN if win is None else win
    if win < 3 or win % 2 == 0 or win > min(x.shape[0], x.shape[1]):
        raise ValueError(f"SSIM window {win} must be odd, >= 3 and fit the {x.shape[1]}x{x.shape[0]} image")
    n = win * win
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    a = np.moveaxis(x, 2, 0).astype(np.int32)  # C, H, W
    b = np.moveaxis(y, 2, 0).astype(np.int32)
    sa, sb, saa, sbb, sab = _window_sums(np.stack([a, b, a * a, b * b, a * b]), win)
    # scikit-image's terms with the window means (S/n) and sample (co)variances
    # ((n*SS - S*S) / (n*(n-1))) multiplied out: exact integers (|x| < 2^29) up to this point.
    ab = sa * sb
    num1 = (2 * ab).astype(np.float32) + np.float32(c1 * n * n)
    den1 = (sa * sa + sb * sb).astype(np.float32) + np.float32(c1 * n * n)
    num2 = (2 * (n * sab - ab)).astype(np.float32) + np.float32(c2 * n * (n - 1))
    den2 = ((n * saa - sa * sa) + (n * sbb - sb * sb)).astype(np.float32) + np.float32(c2 * n * (n - 1))
    s = (num1 * num2) / (den1 * den2)
    return float(s.mean(axis=(1, 2), dtype=np.float64).mean())  # per channel, then over channels
