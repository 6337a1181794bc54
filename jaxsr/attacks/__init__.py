"""Adversarial perturbations of critics: FGM, PGD and the adaptive switch."""
