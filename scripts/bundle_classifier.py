"""Ship the metric classifier for the official MNIST with the app.

    python scripts/bundle_classifier.py --data ../shared/data/mnist

Trains the default recipe (``ClassifierConfig()``) on the training split, or takes this user's
cached one, and copies it into diffusion_studio/resources/classifier/ under its cache name (a
hash of the data's bytes, the recipe and the classifier version), where ``ensure_classifier``
finds it before it would train. Run it again whenever the recipe or CLASSIFIER_VERSION changes.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from diffusion_studio.engine.evaluation.classifier import (
    ClassifierConfig, bundled_classifier_dir, classifier_path, ensure_classifier,
)
from diffusion_studio.engine.storage.data import load_mnist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the folder with the four official MNIST files")
    args = parser.parse_args()
    data = load_mnist(Path(args.data))
    config = ClassifierConfig()
    clf = ensure_classifier(data, config=config)
    target = bundled_classifier_dir() / classifier_path(data, config).name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(clf.path, target)
    print(f"{target}: test accuracy {clf.meta['test_accuracy']:.4f}, trained in {clf.meta['train_seconds']:.0f} s")


if __name__ == "__main__":
    main()
