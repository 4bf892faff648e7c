"""The sound: spectrogram params and codec, Griffin-Lim inversion, mixing, PCM and audio files.

Pure signal code; it imports nothing else of jam.
"""
