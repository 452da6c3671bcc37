from mt5lite.cli import main

raise SystemExit(main())
