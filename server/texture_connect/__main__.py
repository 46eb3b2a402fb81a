from texture_connect.cli import main

raise SystemExit(main())
