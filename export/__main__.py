"""``python -m export CKPT --out DIR`` is ``python -m export.trt CKPT --out DIR``."""

import sys

from export.trt import main

sys.exit(main())
