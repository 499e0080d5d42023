from xwatch.cli import main

raise SystemExit(main())
