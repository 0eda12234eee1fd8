"""Widths of the paper network (MOST-NET+, MOST-NET++), which every size preset divides by its `divisor`.

Where the papers give a width it is used as given: encoder and decoder channels 2^(s+4) (32/64/128), the
homography estimator's 64-128-256-256-256 blocks. Where they leave it open, it is chosen so that the four
networks the papers report have their parameter counts (`nss spaces costs`; tests/test_costs.py):

    network                               paper    ours
    MOST-NET+ SW  (flow at scale 3)       13.2 M   13.38 M
    MOST-NET+ DW  (flow at scales 3, 2)   29.8 M   30.14 M
    MOST-NET++    (every head)             8.9 M    8.59 M
    MOST-NSS++    (R@1,3 · M@2,3 · H@3)    6.8 M    6.53 M

- Flow estimators: seven 3×3 convolutions with hidden widths b·(1, 2, 4, 4, 4, 2). DW − SW = 16.6 M is one
  scale-2 estimator, which b = 192 gives (16.6 M); SW minus everything else is the coarsest estimator, b = 120
  (6.5 M). Scale 1 is in no paper network (MOST-NET+ leaves it out as too costly for its gain); it gets the
  scale-2 widths, so a finer flow head costs what the papers' finest one costs.
- Dense heads (restoration, segmentation): three 3×3 convolutions whose hidden width is DENSE_HIDDEN × the
  scale's channels. With the minimal width (the scale's channels) the parts MOST-NSS++ keeps come to 4.2 M, not
  6.8 M; the dense heads are the only other width the papers leave open, and 2.5× puts MOST-NET++ and MOST-NSS++
  within 4% of their counts and their ratio (1.31) on the papers'.
- Homography estimators: "for s = 2 and s = 3 the depth is truncated from the second and third layers onwards"
  is read literally (the layers from the s-th on are removed: scale 2 keeps the first block, scale 3 the first
  two). That is what MOST-NET++ − MOST-NSS++ = 2.1 M allows; removing the first layers instead would leave three
  estimators of ~1.5 M each, 3.2 M between the two networks.
"""
from __future__ import annotations

SCALE1_CHANNELS = 32  # encoder and decoder channels at scale s: 32 · 2^(s-1) = 2^(s+4)
DENSE_HIDDEN = 2.5  # dense heads' hidden width ÷ the scale's channels
HOMOGRAPHY_BLOCKS = (64, 128, 256, 256, 256)  # conv-BN-ReLU-max-pool blocks of the scale-1 estimator
HOMOGRAPHY_DROPOUT = 0.2
FLOW_SHAPE = (1, 2, 4, 4, 4, 2)  # hidden widths of the seven-convolution flow estimator, × its base width
FLOW_BASE_COARSEST = 120  # the papers' scale-3 estimator (SW)
FLOW_BASE_FINER = 192  # the papers' scale-2 estimator (DW − SW), and scale 1


def scale_channels(scale: int) -> int:
    return SCALE1_CHANNELS * 2 ** (scale - 1)


def homography_blocks(scale: int) -> tuple[int, ...]:
    """Block widths of the estimator at `scale`: all of them at scale 1, the first s−1 at a coarser scale s."""
    return HOMOGRAPHY_BLOCKS if scale == 1 else HOMOGRAPHY_BLOCKS[:scale - 1]


def flow_widths(scale: int, coarsest: int) -> tuple[int, ...]:
    base = FLOW_BASE_COARSEST if scale == coarsest else FLOW_BASE_FINER
    return tuple(base * k for k in FLOW_SHAPE)
