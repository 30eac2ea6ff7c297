"""Is one codec setting better than another beyond the noise of a small sample? (`fastrec bench`)

`fastrec bench` measures settings on a sample of 20-200 images and a handful of timing rounds, so
a 0.02 dB or 2 % difference may be the sample's luck. Every comparison here is *paired* against
a baseline setting (the seed's q90 4:2:0) measured on the same images and in the same rounds:

* speed: the ratio setting ÷ baseline of each round (both ran seconds apart, in a rotated order),
  as the median and the min–max over the rounds; it needs at least `MIN_ROUNDS` rounds, and the
  whole min–max must clear 1 ± `SPEED_FLOOR` (with 5 rounds, pure noise puts all of them on one
  side of 1 one time in 16; a shared machine's drift is a few per cent);
* size, PSNR, SSIM: the per-image differences setting − baseline, their mean and a percentile
  bootstrap interval (`LEVEL`) of that mean, resampling images (the same resamples for every
  setting, seeded); it needs at least `MIN_IMAGES` images.

An axis is "better" or "worse" only when its whole interval lies on one side of no change;
`recommended()` keeps the settings better on one axis and worse on none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

LEVEL = 0.95          # bootstrap interval of a mean difference
RESAMPLES = 2000
MIN_ROUNDS = 3        # fewer timing rounds: the speed axis is not judged
SPEED_FLOOR = 0.05    # speed ratios within 1 ± this are noise even when every round agrees
MIN_IMAGES = 5        # fewer images: size and quality are not judged

BETTER, WORSE, NOISE, UNJUDGED = "better", "worse", "within noise", "not judged"
AXES = ("speed", "size", "psnr", "ssim")


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval; `lo`/`hi` are NaN when it could not be judged."""

    value: float
    lo: float
    hi: float

    @property
    def judged(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    def side(self, neutral: float, higher_is_better: bool, floor: float = 0.0) -> str:
        """BETTER/WORSE when the whole interval lies beyond `neutral` ± `floor`, else NOISE."""
        if not self.judged:
            return UNJUDGED
        if self.lo > neutral + floor:
            return BETTER if higher_is_better else WORSE
        if self.hi < neutral - floor:
            return WORSE if higher_is_better else BETTER
        return NOISE


NAN = Interval(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class Margins:
    """One setting against the baseline: speed ratio, size change (fraction of the baseline's
    bytes), PSNR difference (dB), SSIM difference, and the verdict of each axis."""

    speed_ratio: Interval
    size_change: Interval
    psnr_diff: Interval
    ssim_diff: Interval

    @property
    def verdicts(self) -> dict[str, str]:
        return {"speed": self.speed_ratio.side(1.0, True, SPEED_FLOOR), "size": self.size_change.side(0.0, False),
                "psnr": self.psnr_diff.side(0.0, True), "ssim": self.ssim_diff.side(0.0, True)}

    @property
    def beats_baseline(self) -> bool:
        """Better beyond the interval on at least one axis, worse beyond it on none."""
        v = self.verdicts.values()
        return BETTER in v and WORSE not in v


class Bootstrap:
    """Seeded resamples of n images, shared by every comparison of one sweep (so they are paired)."""

    def __init__(self, n: int, seed: int = 0, resamples: int = RESAMPLES):
        self.n = n
        self._idx = np.random.default_rng([seed, 0xB007]).integers(0, n, (resamples, n)) if n else None

    def mean_interval(self, diffs: Sequence[float], scale: float = 1.0) -> Interval:
        """Mean of the per-image differences (÷ scale) and its bootstrap interval; NaN entries
        (an image a metric cannot score) are left out, and then the resamples are drawn afresh."""
        d = np.asarray(diffs, dtype=np.float64)
        keep = ~np.isnan(d)
        if keep.sum() < MIN_IMAGES:
            mean = float(d[keep].mean() / scale) if keep.any() else math.nan
            return Interval(mean, math.nan, math.nan)
        if keep.all() and len(d) == self.n:
            idx = self._idx
        else:
            d = d[keep]
            idx = np.random.default_rng([len(d), 0xB007]).integers(0, len(d), (self._idx.shape[0], len(d)))
        means = d[idx].mean(axis=1) / scale
        tail = (1 - LEVEL) / 2 * 100
        lo, hi = np.percentile(means, [tail, 100 - tail])
        return Interval(float(d.mean() / scale), float(lo), float(hi))


def speed_interval(rates: Sequence[float], base_rates: Sequence[float]) -> Interval:
    """Per-round ratios rates[i] / base_rates[i]: median, and min–max once there are MIN_ROUNDS."""
    ratios = [a / b for a, b in zip(rates, base_rates) if b > 0]
    if not ratios:
        return NAN
    med = float(np.median(ratios))
    if len(ratios) < MIN_ROUNDS:
        return Interval(med, math.nan, math.nan)
    return Interval(med, float(min(ratios)), float(max(ratios)))


def _mean_or_one(values: np.ndarray) -> float:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if len(kept) and kept.mean() > 0 else 1.0


def compare(boot: Bootstrap, rates, base_rates, sizes, base_sizes, psnrs, base_psnrs,
            ssims, base_ssims) -> Margins:
    """Margins of one setting against the baseline from per-round rates and per-image values
    (the same images in the same order on both sides)."""
    sizes, base_sizes = np.asarray(sizes, float), np.asarray(base_sizes, float)
    return Margins(
        speed_ratio=speed_interval(rates, base_rates),
        size_change=boot.mean_interval(sizes - base_sizes, scale=_mean_or_one(base_sizes)),
        psnr_diff=boot.mean_interval(np.asarray(psnrs, float) - np.asarray(base_psnrs, float)),
        ssim_diff=boot.mean_interval(np.asarray(ssims, float) - np.asarray(base_ssims, float)))
