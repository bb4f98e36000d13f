from cinema.cli import main

raise SystemExit(main())
