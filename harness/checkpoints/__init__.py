"""Checkpoints: discovery of folders and GGUF files, weight-file identity, family resolution."""
