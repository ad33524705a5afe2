from census_mcp.cli import main

raise SystemExit(main())
