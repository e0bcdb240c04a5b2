import sys

from dpiat.cli import main

sys.exit(main())
