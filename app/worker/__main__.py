"""``python -m app.worker``: the worker process (started by the server; see ``app.worker.child``)."""

from app.worker.child import main

if __name__ == "__main__":
    raise SystemExit(main())
