"""jam: a real-time streaming music jam server built on spectrogram diffusion."""

__version__ = "0.1.0"
