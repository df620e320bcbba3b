"""The built-in reference family: small Pythia-style checkpoints trained offline on the symbolic text."""
