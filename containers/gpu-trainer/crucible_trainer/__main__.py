import sys

from crucible_trainer.entrypoint import main

sys.exit(main())
