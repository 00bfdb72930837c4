import sys

from crucible_evaluator.entrypoint import main

sys.exit(main())
