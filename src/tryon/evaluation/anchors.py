"""Published try-on figures on VITON-HD, shown beside a report so a user sees where a setup stands.

The numbers are as the papers print them; each paper runs its own evaluation script (resizing,
image size, KID scale differ: KID is usually printed x100 or x1000), so they place a setup, they
do not rank it. ``tryon eval`` prints KID unscaled.
"""

from __future__ import annotations

CATVTON = "CatVTON (Chong et al., 2024, arXiv:2407.15886), Table 1"
IDM_VTON = "IDM-VTON (Choi et al., 2024, arXiv:2403.05139) as reported in " + CATVTON

#: dataset, method, paired SSIM / LPIPS / FID / KID, unpaired FID / KID, source
ANCHORS: list[dict[str, object]] = [
    {"dataset": "VITON-HD", "method": "CatVTON", "ssim": 0.870, "lpips": 0.057, "fid": 5.43, "kid": 0.41,
     "unpaired_fid": 9.02, "unpaired_kid": 1.09, "source": CATVTON},
    {"dataset": "VITON-HD", "method": "IDM-VTON", "ssim": 0.850, "lpips": 0.060, "fid": 5.76, "kid": 0.73,
     "unpaired_fid": 9.84, "unpaired_kid": 1.12, "source": IDM_VTON},
    {"dataset": "VITON-HD", "method": "StableVITON", "ssim": 0.854, "lpips": 0.091, "fid": 6.44, "kid": 0.94,
     "unpaired_fid": None, "unpaired_kid": None, "source": CATVTON},
    {"dataset": "VITON-HD", "method": "OOTDiffusion", "ssim": 0.819, "lpips": 0.088, "fid": 9.31, "kid": 4.09,
     "unpaired_fid": None, "unpaired_kid": None, "source": CATVTON},
]  # fmt: skip
COLUMNS = ("ssim", "lpips", "fid", "kid", "unpaired_fid", "unpaired_kid")
CAVEAT = (
    "As published; each paper uses its own evaluation script, image size and KID scale (usually x100 or "
    "x1000). tryon eval prints KID unscaled. Use these to place a setup, not to rank it."
)
