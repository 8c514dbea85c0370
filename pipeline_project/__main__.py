from pipeline_project.cli import main

# Guarded: worker processes started with "spawn" (pipeline_project.parallel) import this module again.
if __name__ == "__main__":
    raise SystemExit(main())
