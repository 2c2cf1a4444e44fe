"""What a Greengrass V2 nucleus does with a recipe before a component runs, for the install tests.

From the files ``deploy v2 plan --out DIR`` wrote (recipes, ``deployment.json`` and the
artifact files the recipes' URIs name), :class:`NucleusLayout` does what the nucleus does
for one component on one device (AWS IoT Greengrass V2 Developer Guide, "Component
recipe reference": recipe variables, ``Unarchive``, ``Setenv``; "Run your component"):

* picks the manifest whose ``Platform`` matches the device (``os`` and ``architecture``);
* puts each artifact under ``packages/artifacts/<component>/<version>/`` and unpacks a
  ``ZIP`` one into ``packages/artifacts-unarchived/<component>/<version>/<name>/``,
  owned by the component's user (``Permission.Read: OWNER``);
* makes ``work/<component>/`` for that user;
* fills ``{artifacts:path}``, ``{artifacts:decompressedPath}``, ``{work:path}`` and
  ``{configuration:/NAME}`` (the recipe's defaults, reset and merged with the
  deployment's ``configurationUpdate``) in ``Setenv`` and the lifecycle scripts, and
  refuses any other ``{namespace:key}`` it does not know;
* gives each step the ``Setenv`` variables plus its own (``SVCUID``, the IPC socket).

Running a step is the caller's: on the host with ``sh -c`` (:func:`run_step`), or in
the arm64 userland (``pi_userland.run``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

PLACEHOLDER = re.compile(r"\{(artifacts|work|configuration|kernel|iot):([^}]*)\}")


def load_plan(plan_dir: Path) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, Any]]:
    """(component name -> recipe, the deployment document) from a ``v2 plan --out`` folder."""
    recipes = {
        json.loads(p.read_text())["ComponentName"]: json.loads(p.read_text())
        for p in sorted(plan_dir.glob("*.recipe.json"))
    }
    return recipes, json.loads((plan_dir / "deployment.json").read_text())


def manifest_for(recipe: Mapping[str, Any], architecture: str) -> Dict[str, Any]:
    """The manifest the nucleus picks on a Linux device of ``architecture``."""
    for manifest in recipe["Manifests"]:
        platform = manifest.get("Platform", {})
        if platform.get("os", "linux") not in ("linux", "*", "all") or platform.get(
            "architecture", architecture
        ) not in (architecture, "*", "all"):
            continue
        return dict(manifest)
    raise AssertionError(
        "no manifest of {} matches linux/{}".format(recipe["ComponentName"], architecture)
    )


def configuration(recipe: Mapping[str, Any], deployment: Mapping[str, Any]) -> Dict[str, Any]:
    """The component's configuration after the deployment: defaults, reset, merge."""
    name = recipe["ComponentName"]
    config = dict(recipe.get("ComponentConfiguration", {}).get("DefaultConfiguration", {}))
    update = deployment["components"][name].get("configurationUpdate", {})
    merge = update.get("merge")
    if merge:
        config.update(json.loads(merge) if isinstance(merge, str) else merge)
    return config


class NucleusLayout:
    """One component laid out under ``root`` as the nucleus would (see the module doc).

    ``root`` is where the device's ``/`` is on this machine (the userland, or a
    temporary folder); ``greengrass`` the nucleus's root path as the device sees it.
    """

    def __init__(
        self,
        root: Path,
        plan_dir: Path,
        component: str,
        architecture: str,
        *,
        user: Tuple[int, int] = (0, 0),
        greengrass: str = "/greengrass/v2",
    ) -> None:
        recipes, self.deployment = load_plan(plan_dir)
        self.recipe = recipes[component]
        self.component = component
        self.version = self.recipe["ComponentVersion"]
        self.manifest = manifest_for(self.recipe, architecture)
        self.configuration = configuration(self.recipe, self.deployment)
        self.root = Path(root)
        self.user = user
        base = greengrass.rstrip("/")
        self.base = base
        self.paths = {
            "artifacts:path": "{}/packages/artifacts/{}/{}".format(base, component, self.version),
            "artifacts:decompressedPath": "{}/packages/artifacts-unarchived/{}/{}".format(
                base, component, self.version
            ),
            "work:path": "{}/work/{}".format(base, component),
        }
        self._stage(plan_dir)

    def host(self, device_path: str) -> Path:
        """Where a device path is on this machine."""
        return self.root / device_path.lstrip("/")

    def _stage(self, plan_dir: Path) -> None:
        artifacts = self.host(self.paths["artifacts:path"])
        unarchived = self.host(self.paths["artifacts:decompressedPath"])
        work = self.host(self.paths["work:path"])
        for folder in (artifacts, unarchived, work):
            folder.mkdir(parents=True, exist_ok=True)
        for artifact in self.manifest.get("Artifacts", []):
            file_name = artifact["URI"].rsplit("/", 1)[-1]
            source = plan_dir / file_name
            assert source.is_file(), "the plan folder lacks {} (named by {})".format(
                file_name, artifact["URI"]
            )
            (artifacts / file_name).write_bytes(source.read_bytes())
            if artifact.get("Unarchive") == "ZIP":
                target = unarchived / file_name[: -len(".zip")]
                with zipfile.ZipFile(source) as archive:
                    archive.extractall(target)
        for folder in (artifacts, unarchived, work):
            for path in [folder, *folder.rglob("*")]:
                os.chown(path, *self.user)
            parent = folder.parent
            while parent != self.host(self.base).parent:  # the user may traverse them
                os.chown(parent, *self.user)
                parent = parent.parent

    def fill(self, text: str) -> str:
        """``text`` with the recipe variables replaced; an unknown one is an error."""

        def value(match: re.Match[str]) -> str:
            namespace, key = match.group(1), match.group(2)
            if namespace == "configuration":
                pointer = key.lstrip("/").split("/")
                node: Any = self.configuration
                for part in pointer:
                    node = node[part]
                return node if isinstance(node, str) else json.dumps(node)
            full = "{}:{}".format(namespace, key)
            if full not in self.paths:
                raise AssertionError("the nucleus stand-in does not know {{{}}}".format(full))
            return self.paths[full]

        return PLACEHOLDER.sub(value, text)

    def environ(self, extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
        """``Setenv`` filled, plus what the nucleus adds for the step."""
        lifecycle = self.manifest.get("Lifecycle", {})
        env = {k: self.fill(v) for k, v in (lifecycle.get("Setenv") or {}).items()}
        env.update(extra or {})
        return env

    def script(self, step: str) -> Optional[str]:
        """The filled script of a lifecycle step (None when the manifest has none)."""
        entry = self.manifest.get("Lifecycle", {}).get(step)
        if entry is None:
            return None
        script = entry.get("Script") if isinstance(entry, dict) else entry
        return self.fill(script)

    def artifact_names(self) -> List[str]:
        return [a["URI"].rsplit("/", 1)[-1] for a in self.manifest.get("Artifacts", [])]


def run_step(
    layout: NucleusLayout,
    step: str,
    *,
    base_env: Mapping[str, str],
    timeout: float = 900,
    cut_network: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a lifecycle step on this machine with ``sh -c``, the device root being a folder
    (paths in the script are already host paths: lay out with ``greengrass`` under root)."""
    script = layout.script(step)
    assert script is not None, "no {} step".format(step)
    env = dict(base_env)
    env.update(layout.environ())
    argv = ["sh", "-c", script]
    if cut_network:
        argv = ["unshare", "--net"] + argv
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(layout.host(layout.paths["work:path"])),
    )
