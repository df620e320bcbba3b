"""The model protocol and its transformers backend: loading, forward-pass scoring, packing, generation, caching."""
