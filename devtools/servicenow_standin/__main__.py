"""``python -m devtools.servicenow_standin``."""

from .cli import main

raise SystemExit(main())
