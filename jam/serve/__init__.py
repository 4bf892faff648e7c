"""The wire and its listeners: protocol, bounded queues, session pacing, the hub of sessions,
HTTP routes and the websocket server. Never imports :mod:`jam.train`.
"""
