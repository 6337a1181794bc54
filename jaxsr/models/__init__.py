"""Flax linen networks: generators, discriminators and encoders (NHWC)."""
