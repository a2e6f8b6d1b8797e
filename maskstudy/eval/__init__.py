"""Adversarial evaluation: FGSM and PGD in pixel units on normalised inputs, robust accuracy."""

from maskstudy.eval.attacks import PixelBox, fgsm, input_gradient, pgd, uniform_start
from maskstudy.eval.robust import (
    attack_metrics,
    metric_key,
    robust_accuracy,
    robust_accuracy_replicas,
)

__all__ = [
    "PixelBox",
    "attack_metrics",
    "fgsm",
    "input_gradient",
    "metric_key",
    "pgd",
    "robust_accuracy",
    "robust_accuracy_replicas",
    "uniform_start",
]
