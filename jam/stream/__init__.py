"""The timing of one stream: controls and the alpha walk, the beat-grid timeline, the producer.

Positions are stream samples from the session's start; no sockets, no wall clock.
"""
