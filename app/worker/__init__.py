"""The worker process: generation (all torch work) runs in a supervised child of the server process.

- ``protocol``: the pipe's messages (JSON headers + binary frames; images as PNG/JPEG, params as JSON).
- ``child``: the worker process itself (``python -m app.worker``): settings, paths, extensions, model manager, runners.
- ``supervisor``: ``ProcessExecutor``, the server side: starts and watches the child, turns its events into the
  server's ``Job`` objects, restarts it after a crash (the running job fails with the cause) or a hang past the
  interrupt grace period, and reloads the last model.
- ``remote``: ``RemoteModels``, the server's view of the worker's model manager (cached state, named operations).
- ``ops``: the named model operations (``load_model``, ``reload_model``, ``unload_model``, ``model_info``).

Only ``child`` and ``ops`` run engine code, and only in the worker (or the in-process ``--worker thread`` mode).
"""
