"""posenc_utils: a reproducible study of how much absolute position CNNs encode (Islam et al., ICLR 2020)."""
from .primitives import devices

__version__ = "0.1.0"
devices.flush_denormals()  # before any torch operation starts torch's thread pool, so that every thread flushes
