"""How jam's own model is trained: a corpus made here, then `jam train`, then a judge.

Nothing here imports the server or the stream: training reaches the model only through
``jam.model`` (sample renders use :func:`jam.model.engine.load_engine`).

The corpus (``jam corpus``):

- ``composer``: seeded loops in many styles as General MIDI note events (pure Python)
- ``pieces``: excerpts of music21's bundled scores as note events
- ``soundfont``: note events -> mono audio through a GM SoundFont
- ``captions``: varied captions per clip, and the held-out wordings and combinations
- ``corpus``: the whole corpus build and ``corpus_main``

Training (``jam train``):

- ``dataset``: an audio folder and its captions -> cached spectrogram tiles
- ``config``: jam's spectrogram, the architectures, the noise schedule, the run's plan
- ``loop``: the two phases (autoencoder, then UNet with EMA) and their checkpoints
- ``export``: trained models -> a model folder the engine loads as it is
- ``report``: sample renders and the loss chart
- ``run``: one whole resumable run (``train``)
- ``main``: the command line (``train_main``)

Judging: ``evaluate``, a style classifier and spectrogram distances (``benchmarks/bench_model.py``).
"""
