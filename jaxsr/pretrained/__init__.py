"""Importers from public weight files (PyTorch, Keras, ours) into Flax trees."""
