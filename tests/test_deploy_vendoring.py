"""deploy.vendoring: the device's Python resolves the zips' dependencies, cached, with clear errors.

pip runs for real (PyPI, or its cache); "offline" is pip with no index at all.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from test_deploy_support import python38

from deploy.dependencies import SitePackages, python_satisfies
from deploy.errors import DeployError
from deploy.vendoring import Resolver, find_python, resolver_for, vendor_directory

V1_REQUIREMENTS = ["requests>=2.25", "greengrasssdk>=1.6"]


def no_pythons_but_this_one(monkeypatch, tmp_path):
    """A machine with no pyenv, no python3.8 on PATH and no PYTHON38."""
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("PYTHON38", raising=False)
    import deploy.vendoring

    monkeypatch.setattr(deploy.vendoring, "_probed", {})


def test_python38_env_var_names_the_interpreter_and_a_wrong_one_is_an_error(monkeypatch):
    real = python38()
    monkeypatch.setenv("PYTHON38", real)
    assert find_python("3.8") == real
    monkeypatch.setenv("PYTHON38", sys.executable)  # the tooling's 3.11
    with pytest.raises(DeployError, match=r"PYTHON38=.* is Python 3\.11, not Python 3\.8"):
        find_python("3.8")


def test_without_a_3_8_interpreter_ci_fails_loudly_and_a_laptop_skips(monkeypatch, tmp_path):
    no_pythons_but_this_one(monkeypatch, tmp_path)
    assert find_python("3.8") is None
    assert resolver_for("3.8").native is False
    monkeypatch.setenv("EDGE_AGENT_REQUIRE_PY38", "1")
    with pytest.raises(pytest.fail.Exception, match="PYTHON38"):
        python38()
    monkeypatch.delenv("EDGE_AGENT_REQUIRE_PY38")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        python38()


def _all_admit(directory: Path, target: str) -> dict:
    from importlib import metadata

    versions = {}
    for dist in metadata.distributions(path=[str(directory)]):
        requires = dist.metadata.get("Requires-Python") or ""
        assert python_satisfies(requires, target), (dist.metadata["Name"], requires)
        versions[dist.metadata["Name"].lower()] = dist.version
    return versions


@pytest.fixture(scope="module")
def cache38(tmp_path_factory):
    """One real pip resolution for Python 3.8, shared by this module's tests."""
    cache = tmp_path_factory.mktemp("vendor-cache")
    directory = vendor_directory(
        V1_REQUIREMENTS, Resolver("3.8", python38(), native=True), cache=cache
    )
    return cache, directory


def test_the_3_8_interpreter_resolves_releases_that_run_on_3_8(cache38):
    _cache, directory = cache38
    versions = _all_admit(directory, "3.8")
    assert {"requests", "urllib3", "idna", "greengrasssdk", "cbor2"} <= set(versions)
    assert SitePackages(directory).get("requests") is not None


@pytest.mark.slow
def test_without_one_this_pythons_pip_resolves_for_3_8_instead(tmp_path):
    """pip --python-version 3.8 from the 3.11 tooling still picks 3.8-compatible releases."""
    resolver = Resolver("3.8", sys.executable, native=False)
    directory = vendor_directory(V1_REQUIREMENTS, resolver, cache=tmp_path / "cache")
    assert "requests" in _all_admit(directory, "3.8")


def test_a_resolution_is_cached_so_the_next_run_needs_neither_pip_nor_network(cache38):
    cache, first = cache38
    # same target and requirements; an interpreter that cannot run proves pip is not called
    again = vendor_directory(
        list(reversed(V1_REQUIREMENTS)),
        Resolver("3.8", "/nonexistent/python3.8", True),
        cache=cache,
    )
    assert again == first


def test_refresh_resolves_again_and_a_failed_refresh_keeps_the_last_good_one(cache38, tmp_path):
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(cache38[0], cache)
    broken = Resolver("3.8", "/nonexistent/python3.8", True)
    with pytest.raises(DeployError, match="pip could not resolve"):  # pip did run
        vendor_directory(V1_REQUIREMENTS, broken, cache=cache, refresh=True)
    kept = vendor_directory(V1_REQUIREMENTS, broken, cache=cache)
    assert SitePackages(kept).get("requests") is not None


def test_offline_without_a_cache_is_a_clear_error_that_leaves_nothing_behind(monkeypatch, tmp_path):
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured index or find-links
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    cache = tmp_path / "cache"
    with pytest.raises(DeployError) as failure:
        vendor_directory(V1_REQUIREMENTS, Resolver("3.8", python38(), True), cache=cache)
    text = str(failure.value)
    assert "pip could not resolve greengrasssdk>=1.6, requests>=2.25 for Python 3.8" in text
    assert "--site-packages DIR" in text and str(cache) in text
    assert list((cache / "vendor").iterdir()) == []  # no half-filled directory to trust later
