import sys

from treefuse.cli import main

sys.exit(main())
