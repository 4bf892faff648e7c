"""The model: shared tile types, model folders and loading, the diffusion engine, the device
queue, interpolation, text encoders, and random-weight pipelines for tests and training.
"""
