import sys

from medloss.cli import main

sys.exit(main())
