"""regswitch: a SIP softswitch with a VOS3000-style registration replace policy."""

__version__ = "0.1.0"
