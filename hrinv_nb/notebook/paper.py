"""The numbers the paper reports (Zhou et al., IEEE TCSVT 2022), as data, for "ours vs paper" tables.

Transcribed from the paper's Tables I–III and the Fig. 6 caption. The
notebooks print these beside their own measurements, always labelled as the paper's.
"""

from __future__ import annotations

# Table I: cost on the authors' hardware (training on 8×V100; inversion, LSO, generation on one V100).
TABLE_I: dict[str, dict[str, object]] = {
    "StyleGAN2 on FFHQ": {
        "res": 1024,
        "gpus": 8,
        "batch": 32,
        "gpu_mem_gb": 8.3,
        "length": "25,000 kimg",
        "time": "6 d 03 h",
    },
    "Style-INR-GAN on FFHQ": {
        "res": 1024,
        "gpus": 8,
        "batch": 32,
        "gpu_mem_gb": 8.9,
        "length": "25,000 kimg",
        "time": "7 d 20 h",
    },
    "Style-INR-GAN fine-tune (Disney)": {
        "res": 1024,
        "gpus": 8,
        "batch": 32,
        "gpu_mem_gb": 8.9,
        "length": "1,000 kimg",
        "time": "8 h 43 m",
    },
    "Inversion": {
        "res": 1024,
        "gpus": 1,
        "batch": 1,
        "gpu_mem_gb": 5.89,
        "length": "1,000 steps",
        "time": "2 m 18 s",
        "seconds": 138.0,
    },
    "LSO": {
        "res": 1024,
        "gpus": 1,
        "batch": 1,
        "gpu_mem_gb": 5.38,
        "length": "50 steps",
        "time": "8 s",
        "seconds": 8.0,
    },
    "Generation": {
        "res": 1024,
        "gpus": 1,
        "batch": 1,
        "gpu_mem_gb": 0.78,
        "length": "-",
        "time": "32 ms",
        "seconds": 0.032,
    },
}

# Table II: CelebA-HQ 1024², 1000 iterations; (loss input size, PSNR dB, LPIPS).
TABLE_II: list[dict[str, object]] = [
    {"method": "Image2StyleGAN, optim(w)", "input": 256, "psnr": 24.36, "lpips": 0.4226},
    {"method": "Image2StyleGAN++, optim(w, n)", "input": 256, "psnr": 30.44, "lpips": 0.3590},
    {"method": "LPIPS (relu)", "input": 256, "psnr": 31.69, "lpips": 0.2587},
    {"method": "LPIPS (relu)", "input": 1024, "psnr": 31.24, "lpips": 0.0591},
    {"method": "VGG_relu", "input": 256, "psnr": 31.04, "lpips": 0.3533},
    {"method": "VGG_relu", "input": 1024, "psnr": 30.62, "lpips": 0.0523},
    {"method": "VGG_conv", "input": 256, "psnr": 31.62, "lpips": 0.3394},
    {"method": "VGG_conv (HRInversion)", "input": 1024, "psnr": 33.16, "lpips": 0.0703},
    {"method": "ResNet50 (conv)", "input": 256, "psnr": 32.14, "lpips": 0.3285},
    {"method": "ResNet50 (conv)", "input": 1024, "psnr": 32.87, "lpips": 0.1346},
]

# Fig. 6 caption: a single example, optim(w, n); PSNR in dB (loss input 256 → 1024).
FIG_6_PSNR: dict[str, tuple[float, float]] = {"VGG_conv": (32.09, 31.91), "VGG_relu": (31.14, 30.22)}

# Table III: reference-based stylisation, 100 CelebA-HQ contents × 50 styles.
# ID retrieval top-1 in %, FID at 1024² and 256² (None: not reported).
TABLE_III: dict[str, dict[str, dict[str, float | None]]] = {
    "cartoon": {
        "StarGANv2": {"id": 1.06, "fid1024": None, "fid256": 39.35},
        "DualStyleGAN": {"id": 11.98, "fid1024": 23.72, "fid256": 25.91},
        "Ours": {"id": 60.30, "fid1024": 56.80, "fid256": 65.29},
    },
    "caricature": {
        "StarGANv2": {"id": 0.98, "fid1024": None, "fid256": 37.03},
        "DualStyleGAN": {"id": 21.64, "fid1024": 22.54, "fid256": 25.56},
        "Ours": {"id": 80.76, "fid1024": 48.71, "fid256": 49.65},
    },
    "anime": {
        "StarGANv2": {"id": 1.10, "fid1024": None, "fid256": 40.13},
        "DualStyleGAN": {"id": 1.34, "fid1024": 12.63, "fid256": 14.29},
        "Ours": {"id": 7.52, "fid1024": 53.81, "fid256": 58.62},
    },
}
TABLE_III_DATASET_SIZES = {"cartoon": 317, "caricature": 199, "anime": 174}

# Fig. 13: LSO lowers LPIPS(content, stylised) for most of 13,090 pairs (70 contents × 187 styles).
FIG_13_PAIRS = 13090
