from fastpacs.cli import main

raise SystemExit(main())
