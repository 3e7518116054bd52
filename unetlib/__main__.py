from unetlib.cli import main

raise SystemExit(main())
