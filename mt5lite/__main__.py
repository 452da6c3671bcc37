"""``python -m mt5lite``: the command line."""

from mt5lite.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
