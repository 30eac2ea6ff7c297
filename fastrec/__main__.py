from fastrec.cli import main

raise SystemExit(main())
