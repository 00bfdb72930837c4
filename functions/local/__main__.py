import sys

from functions.local.server import main

sys.exit(main())
