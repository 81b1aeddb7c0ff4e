import sys

from graphprune.cli import main

sys.exit(main())
