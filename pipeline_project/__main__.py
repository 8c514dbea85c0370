from pipeline_project.cli import main

raise SystemExit(main())
