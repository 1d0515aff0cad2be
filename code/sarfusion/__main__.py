from sarfusion.cli import main

raise SystemExit(main())
