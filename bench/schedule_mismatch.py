"""How far is the sampler's starting point x_T ~ N(0, I) from what training showed at t = T?

    python bench/schedule_mismatch.py --data DIR

Training feeds the network x_T = sqrt(abar_T) x_0 + sqrt(1 - abar_T) eps. MNIST
digits are mostly black (mean pixel about -0.74 in [-1, 1]), so each training
x_T's mean pixel is offset by sqrt(abar_T) * mean(x_0), while the mean of pure
noise is 0 give or take sqrt(1 - abar_T) / 28 (one standard deviation of the mean
of 784 noise pixels). This prints that offset in those standard deviations, for
all digits and per class, for each schedule at T = 300. A large offset means the
first reverse step sees an input it was never trained on, and the digits whose
offset is largest (the least ink) are the ones the sampler is least drawn to.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from diffusion_studio.engine.storage.data import load_mnist, to_model_range  # noqa: E402
from diffusion_studio.engine.diffusion.schedule import NoiseSchedule, ScheduleConfig  # noqa: E402

SCHEDULES = {
    "report linear 1e-4..0.02": ScheduleConfig(kind="linear", timesteps=300, beta_start=1e-4, beta_end=0.02),
    "rescaled linear (default)": ScheduleConfig(kind="rescaled_linear", timesteps=300),
    "cosine": ScheduleConfig(kind="cosine", timesteps=300),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="MNIST folder")
    args = p.parse_args(argv)
    data = load_mnist(args.data)
    means = to_model_range(data.train_images).mean(dim=(1, 2, 3))
    labels = data.train_labels
    class_means = [float(means[labels == c].mean()) for c in range(10)]
    print("mean pixel of x_0 per class: " + "  ".join(f"{c}: {m:+.3f}" for c, m in enumerate(class_means)))
    print(f"{'schedule':28s} sqrt(abar_T)  offset of mean(x_T) in SDs: all digits | per class 0..9")
    for name, cfg in SCHEDULES.items():
        s = NoiseSchedule(cfg)
        keep = float(s.alphabar[s.timesteps].sqrt())
        sd = float((1 - s.alphabar[s.timesteps]).sqrt()) / 28
        per_class = " ".join(f"{keep * m / sd:+5.1f}" for m in class_means)
        print(f"{name:28s} {keep:10.4f}   {keep * float(means.mean()) / sd:+6.2f} | {per_class}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
