"""hrinv_nb: a literate reproduction of HRInversion on plain-PyTorch StyleGAN2-ADA networks."""

__version__ = "0.1.0"
