"""The local state file ``up`` writes: what exists in AWS and what it looked like.

JSON (default ``out/state.json``), written atomically after every step so an
interrupted ``up`` resumes and ``destroy`` knows what to remove. It holds ARNs,
ids, version ids, content hashes and file names: never key material, never
secret values.

Layout (keys appear as the resources get created)::

    {"format": 1, "region", "account", "alias", "iot_endpoint",
     "roles": {"lambda"|"group"|"service": {"name", "arn", "created", "policies"}},
     "functions": {fid: {"name", "arn", "version", "alias", "alias_arn", "code_sha256"}},
     "secrets": {resource_id: {"name", "arn", "created"}},
     "thing": {"name", "arn", "created"},
     "certificate": {"arn", "id", "cert_file", "key_file"},
     "policy": {"name", "hash", "attached"},
     "group": {"name", "id", "arn", "created", "role_arn"},
     "definitions": {kind: {"id", "arn", "version_id", "version_arn", "hash"}},
     "group_version": {"id", "arn", "hash"},
     "deployment": {"id", "group_version_id", "status", "lambda_versions"},
     "run_as": {"uid", "gid", "root"},
     "v2": {"thing", "certificate", "policy", "iot_endpoint", "credentials_endpoint",
            "roles": {"token_exchange": {..., "inline_policies"}}, "role_alias",
            "thing_group", "components": {name: {"version", "recipe_hash", "arn",
            "artifact"}}, "deployment": {"id", "hash", "target", "previous"}}}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, MutableMapping

from .errors import DeployError

FORMAT = 1
DEFAULT_STATE_PATH = Path("out") / "state.json"


class State(MutableMapping[str, Any]):
    """A dict persisted to ``path`` on :meth:`save`; ``dry_run`` never writes."""

    def __init__(self, path: Path, data: Dict[str, Any], dry_run: bool = False) -> None:
        self.path = Path(path)
        self.data = data
        self.dry_run = dry_run

    @classmethod
    def load(cls, path: Path, dry_run: bool = False) -> State:
        path = Path(path)
        if not path.exists():
            return cls(path, {"format": FORMAT}, dry_run)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DeployError("cannot read state file {}: {}".format(path, exc))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise DeployError("{} is not a state file this tool wrote".format(path))
        return cls(path, data, dry_run)

    def section(self, key: str) -> Dict[str, Any]:
        """A nested dict, created on first use."""
        node = self.data.setdefault(key, {})
        if not isinstance(node, dict):
            raise DeployError("state file {}: {!r} is not an object".format(self.path, key))
        return node

    def save(self) -> None:
        if self.dry_run:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    def is_empty(self) -> bool:
        return not any(v for k, v in self.data.items() if k not in ("format", "region", "account"))

    def remove(self) -> None:
        if not self.dry_run and self.path.exists():
            self.path.unlink()

    # MutableMapping
    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)
