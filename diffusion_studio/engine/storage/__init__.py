"""Files: checkpoints, atomic writes, MNIST, images, the bundled models and the app's folders."""
