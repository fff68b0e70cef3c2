import sys

from pipeline.allocator import keep_freed_memory

keep_freed_memory()  # before torch allocates anything: every stage runs through here

from pipeline.cli import main  # noqa: E402

sys.exit(main())
