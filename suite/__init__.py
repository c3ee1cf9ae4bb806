"""aegan-suite: an experiment-tracking ablation suite for an AE+GAN method with a code-norm penalty."""

__version__ = "0.1.0"
