import sys

from .typecheck import main

sys.exit(main())
