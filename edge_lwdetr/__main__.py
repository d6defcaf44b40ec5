import sys

from edge_lwdetr.cli import main

sys.exit(main())
