"""posenc_utils: a reproducible study of how much absolute position CNNs encode (Islam et al., ICLR 2020)."""
__version__ = "0.1.0"
