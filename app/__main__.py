"""`python -m app [flags]`: start Atelier (see `python -m app --help`)."""

from app.runtime import main

if __name__ == "__main__":
    raise SystemExit(main())
