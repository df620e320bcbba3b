"""The `natural` skill set: skills a pretrained LM could know, in families (filled by submodules)."""
