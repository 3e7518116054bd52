"""The U-Net reproduction kit (Ronneberger, Fischer & Brox, MICCAI 2015)."""

__version__ = "0.1.0"
