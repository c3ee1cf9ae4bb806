"""``python -m suite.study NAME``: run (or resume) the study of ``studies/NAME.toml``."""

from suite.studycli import main

raise SystemExit(main())
