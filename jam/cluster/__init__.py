"""Past one machine: sessions kept in Redis, so any edge admits a join, any worker continues
a stream whose worker died, and a restart loses nothing.

- :mod:`~jam.cluster.record` — what is kept in Redis, and how (pure: keys, fields, entries);
- :mod:`~jam.cluster.store` — the thin redis-py layer every process talks through;
- :mod:`~jam.cluster.edge` — the page and websockets, fanning a session's Redis stream out;
- :mod:`~jam.cluster.worker` — generation: claims sessions by lease, renders, publishes;
- :mod:`~jam.cluster.outlet` — what a worker's session emits, queued for its frame stream;
- :mod:`~jam.cluster.tasks` — stopping background tasks, boundedly.

``docs/scaling.md`` has the design, the faults and the figures.
"""
