"""CIFAR-10/100-LT readers (sanity checks of the long-tail baselines)."""
