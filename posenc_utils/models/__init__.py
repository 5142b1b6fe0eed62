"""Models: the networks, their families, the profiles that name them, and the builder of any encoder."""
